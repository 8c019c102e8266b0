// The fleet page: draws the table from /api/v1/fleet and redraws it in place every poll
// interval. Sort (?sort=&dir=) and filter (?q=) live in the URL. Every miner string is set
// with textContent, never parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var params = new URLSearchParams(location.search);
  var table = document.getElementById("fleet");
  var filterBox = document.getElementById("filter");
  var statusLine = document.getElementById("status");
  var totals = document.getElementById("totals");
  var banners = document.getElementById("banners");

  function fixed(v, d) { return v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(d); }
  function difficulty(v) {
    if (v === null || v === undefined || !isFinite(v) || v < 0) return "–";
    var units = ["", " k", " M", " G", " T", " P", " E"], i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return i === 0 ? v.toFixed(0) : v.toFixed(2) + units[i];
  }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
    return Math.floor(s / 60) + "m";
  }
  function tempClass(t) {
    if (t === null || t === undefined) return "";
    if (t >= data.max_temp_shutdown_c) return "hot";
    if (t >= data.max_temp_warning_c) return "warn";
    return "";
  }
  var stateOrder = { up: 0, stale: 1, down: 2 };
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function sparkline(values) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 90 22");
    var nums = (values || []).filter(function (v) { return v !== null; });
    if (nums.length < 2) return svg;
    var lo = Math.min.apply(null, nums), hi = Math.max.apply(null, nums);
    var span = hi - lo || 1, points = [];
    values.forEach(function (v, i) {
      if (v === null) return;
      points.push((i * 90 / (values.length - 1)).toFixed(1) + "," + (20 - (v - lo) / span * 18).toFixed(1));
    });
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(line);
    return svg;
  }

  // key, header, sort value, cell filler, extra class
  var columns = [
    ["name", "device", function (d) { return d.name.toLowerCase(); }, function (td, d) {
      var a = el("a", d.name, "name");
      a.href = "/device/" + encodeURIComponent(d.name);
      a.title = d.name + (d.hostname ? " · " + d.hostname : "");
      td.appendChild(a);
      // The address, linking to the miner's own web UI.
      var ui = el("a", d.address, "address muted");
      ui.href = d.web_ui;
      ui.rel = "noopener noreferrer";
      ui.target = "_blank";
      td.appendChild(ui);
    }, "text"],
    ["state", "state", function (d) { return stateOrder[d.state] * 10 + (d.mining_healthy === false ? 1 : 0); }, function (td, d) {
      // The state in words where the eye is: mining, NOT mining and why, down and why since when.
      var problems = d.problems || [];
      if (d.state === "down") {
        var since = d.down_since ? " since " + new Date(d.down_since * 1000).toLocaleString() : " (never answered)";
        td.appendChild(el("span", "down: " + (d.last_error || "no answer") + since, "down"));
      } else if (problems.length) {
        var words = problems.map(function (p) {
          var detail = d.problem_details && d.problem_details[p];
          return p.replace(/_/g, " ") + (detail ? " (" + detail + ")" : "");
        });
        td.appendChild(el("span", "NOT mining: " + words.join(", "), "down"));
        problems.forEach(function (p) {
          td.appendChild(document.createTextNode(" "));
          var badge = el("span", p.replace(/_/g, " "), "badge problem");
          if (d.problem_details && d.problem_details[p]) badge.title = d.problem_details[p];
          td.appendChild(badge);
        });
      } else if (d.state === "stale") {
        td.appendChild(el("span", "stale: the last poll failed" + (d.last_error ? " (" + d.last_error + ")" : ""), "stale"));
      } else {
        td.appendChild(el("span", d.mining_healthy === true ? "mining" : "up", "up"));
      }
      if (d.activity) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("span", d.activity, "badge activity")); }
    }, "text wrap"],
    ["model", "board · firmware", function (d) { return (d.board || d.model || "") + " " + (d.firmware || ""); }, function (td, d) {
      td.textContent = (d.board || d.model || "–") + " · " + (d.firmware || "–");
      td.title = [d.model, d.firmware_family, d.reset_reason ? "last reset: " + d.reset_reason : null].filter(Boolean).join(" · ");
    }, "text hide-narrow"],
    ["hashrate", "GH/s", function (d) { return d.hashrate_ghs; }, function (td, d) {
      td.textContent = fixed(d.hashrate_ghs, 1);
      if (d.percent_of_expected !== null) {
        td.appendChild(el("span", " " + fixed(d.percent_of_expected, 0) + " %", (d.percent_of_expected < 90 ? "warn" : "muted") + " hide-narrow"));
      }
    }],
    ["trend", "last hour", function (d) { return d.hashrate_cv_1h_percent; }, function (td, d) {
      td.appendChild(sparkline(d.hashrate_1h_ghs));
      if (d.hashrate_cv_1h_percent !== null) td.title = "variation " + fixed(d.hashrate_cv_1h_percent, 1) + " %";
    }, "hide-narrow"],
    ["shares", "shares (rej %)", function (d) { return d.shares_accepted; }, function (td, d) {
      td.textContent = d.shares_accepted === null || d.shares_accepted === undefined ? "–" :
        d.shares_accepted + " / " + (d.shares_rejected || 0) + " (" + fixed(d.reject_percent, 2) + " %)";
    }, "hide-narrow"],
    ["fan", "fan %", function (d) { return d.fan_percent; }, function (td, d) { td.textContent = fixed(d.fan_percent, 0); }, "hide-narrow"],
    ["rssi", "RSSI dBm", function (d) { return d.wifi_rssi_dbm; }, function (td, d) { td.textContent = fixed(d.wifi_rssi_dbm, 0); }, "hide-narrow"],
    ["power", "W", function (d) { return d.power_w; }, function (td, d) { td.textContent = fixed(d.power_w, 1); }],
    ["jth", "J/TH", function (d) { return d.joules_per_terahash; }, function (td, d) { td.textContent = fixed(d.joules_per_terahash, 2); }],
    ["asic", "ASIC °C", function (d) { return d.asic_temp_c; }, function (td, d) {
      td.textContent = fixed(d.asic_temp_c, 1); td.className = tempClass(d.asic_temp_c);
    }],
    ["vr", "VR °C", function (d) { return d.vr_temp_c; }, function (td, d) {
      td.textContent = fixed(d.vr_temp_c, 1); td.className = tempClass(d.vr_temp_c);
    }, "hide-narrow"],
    ["clock", "MHz / mV", function (d) { return d.frequency_mhz; }, function (td, d) {
      td.textContent = fixed(d.frequency_mhz, 0) + " / " + fixed(d.core_voltage_mv, 0);
    }, "hide-narrow"],
    ["uptime", "uptime", function (d) { return d.uptime_s; }, function (td, d) { td.textContent = duration(d.uptime_s); }, "hide-narrow"],
    ["pool", "pool", function (d) { return (d.fallback_pool ? "1" : "0") + (d.pool || ""); }, function (td, d) {
      td.textContent = d.pool || "–";
      if (d.fallback_pool) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("span", "fallback", "badge problem")); }
    }, "text hide-narrow"],
    ["best", "best diff", function (d) { return d.best_difficulty; }, function (td, d) { td.textContent = difficulty(d.best_difficulty); }, "hide-narrow"],
    ["session_best", "session best", function (d) { return d.session_best_difficulty; }, function (td, d) { td.textContent = difficulty(d.session_best_difficulty); }, "hide-narrow"]
  ];
  var byKey = {};
  columns.forEach(function (c) { byKey[c[0]] = c; });
  var sortKey = byKey[params.get("sort")] ? params.get("sort") : "name";
  var sortDir = params.get("dir") === "desc" ? "desc" : "asc";
  filterBox.value = params.get("q") || "";

  function keepInUrl() {
    var p = new URLSearchParams(location.search);
    p.set("sort", sortKey);
    p.set("dir", sortDir);
    if (filterBox.value) p.set("q", filterBox.value); else p.delete("q");
    history.replaceState(null, "", "?" + p.toString());
  }

  var headRow = table.tHead.rows[0];
  columns.forEach(function (c) {
    var th = el("th", c[1], c[4] || "");
    th.dataset.key = c[0];
    th.addEventListener("click", function () {
      if (sortKey === c[0]) sortDir = sortDir === "asc" ? "desc" : "asc";
      else { sortKey = c[0]; sortDir = c[4] && c[4].indexOf("text") === 0 ? "asc" : "desc"; }
      keepInUrl();
      render();
    });
    headRow.appendChild(th);
  });
  filterBox.addEventListener("input", function () { keepInUrl(); render(); });

  function compare(a, b) {
    var value = byKey[sortKey][2], x = value(a), y = value(b);
    var missingX = x === null || x === undefined, missingY = y === null || y === undefined;
    if (missingX || missingY) return missingX === missingY ? 0 : missingX ? 1 : -1; // missing last
    var order = typeof x === "string" ? x.localeCompare(y) : x - y;
    if (order === 0) order = a.name.localeCompare(b.name);
    return sortDir === "asc" ? order : -order;
  }

  // A sweep that stopped without putting its miner back (killed, crashed, restore failed).
  function renderBanners() {
    banners.textContent = "";
    data.devices.forEach(function (d) {
      var sweep = d.tune_interrupted;
      if (!sweep) return;
      var box = el("div", null, "banner");
      box.dataset.device = d.name;
      box.textContent = "Sweep #" + sweep.run + " stopped without restoring " + d.name +
        ": it still runs a test setting. Before the sweep it ran " +
        fixed(sweep.original_frequency_mhz, 0) + " MHz / " + fixed(sweep.original_core_voltage_mv, 0) +
        " mV. Run: bitaxe-exporter tune restore --device " + d.name;
      banners.appendChild(box);
    });
  }

  function render() {
    var t = data.totals;
    renderBanners();
    totals.textContent = "";
    [["mining", t.mining + " / " + t.devices], ["problems", String(t.problems)], ["down", String(t.down)],
     ["hashrate", fixed(t.hashrate_ghs / 1000, 2) + " TH/s"],
     ["power", fixed(t.power_w, 0) + " W"], ["fleet J/TH", fixed(t.joules_per_terahash, 2)],
     ["hottest", t.hottest_device === null ? "–" : t.hottest_device + " " + fixed(t.hottest_asic_c, 1) + " °C"]]
      .forEach(function (pair) {
        var box = el("div", null);
        box.appendChild(el("span", pair[0]));
        box.appendChild(document.createTextNode(pair[1]));
        totals.appendChild(box);
      });
    Array.prototype.forEach.call(headRow.cells, function (th) {
      th.classList.toggle("sorted", th.dataset.key === sortKey);
      th.classList.toggle("asc", th.dataset.key === sortKey && sortDir === "asc");
    });
    var needle = filterBox.value.toLowerCase();
    var rows = data.devices.filter(function (d) { return d.name.toLowerCase().indexOf(needle) >= 0; });
    rows.sort(compare);
    var body = document.createElement("tbody");
    rows.forEach(function (d) {
      var tr = document.createElement("tr");
      tr.dataset.device = d.name;
      columns.forEach(function (c) {
        var td = el("td", null, c[4] || "");
        c[3](td, d);
        if (c[4]) td.classList.add.apply(td.classList, c[4].split(" "));
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
    statusLine.className = "muted";
    statusLine.textContent = rows.length + " of " + data.devices.length + " devices · updated " +
      new Date(data.generated_at * 1000).toLocaleTimeString();
    document.body.dataset.updated = String(data.generated_at);
  }

  function interval() { return Math.max(2, data.poll_interval_seconds || 5) * 1000; }
  function refresh() {
    // An exporter that vanished mid-request (its host off the network) must not hang the
    // page for minutes: give up after two intervals and say so.
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, Math.max(10000, 2 * interval()));
    fetch("/api/v1/fleet", { cache: "no-store", signal: abort.signal })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (fresh) { data = fresh; render(); })
      .catch(function (e) {
        statusLine.textContent = "the exporter is not answering (" + (e.name === "AbortError" ? "timed out" : e.message) +
          "); showing the data of " + new Date(data.generated_at * 1000).toLocaleTimeString();
        statusLine.className = "warn";
      })
      .then(function () { clearTimeout(timer); setTimeout(refresh, interval()); });
  }
  render();
  setTimeout(refresh, interval());
})();
