// Kiosk page: shows the member identified at this terminal (docs/kiosk.md).
//
// One EventSource on /kiosk/events (cookie-authenticated, this terminal only). The browser
// reconnects by itself after a dropped stream and sends Last-Event-ID; when the stream fails
// for good (HTTP error while the gateway restarts, or silence past the watchdog) the page
// opens a new one itself with a growing delay, passing the last id as ?last_event_id=.
// Screen state is mirrored on <body data-screen data-connection> for tests and CSS.
(function () {
  "use strict";

  var root = document.documentElement;
  var terminal = root.dataset.terminal || "";
  var displayMs = Math.max(1, Number(root.dataset.displaySeconds) || 15) * 1000;
  var lang = root.lang === "en" ? "en" : "zh";
  var RESOLVE_WAIT_MS = 3000; // a detected event with no answer after this is shown as offline
  var WATCHDOG_MS = 40000; // the gateway pings every 15 s
  var BACKOFF_FIRST_MS = 1000;
  var BACKOFF_MAX_MS = 30000;

  var LABELS = {
    en: {
      terminal: "Terminal {id}",
      waiting_title: "Welcome",
      waiting_sub: "Scan your member card or member code",
      reading: "Looking you up\u2026",
      greeting: "Welcome back",
      points: "Points",
      balance: "Balance",
      phone: "Phone {value}",
      cached: "Offline: details as last seen",
      unknown_title: "Unknown card",
      unknown_sub: "This card or code is not registered. Please ask a member of staff.",
      offline_title: "Member details unavailable (offline)",
      offline_sub: "You can still check out; the visit is recorded later.",
      token: "Card {value}",
      payment_code: "Payment code",
      signedout_title: "Kiosk signed out",
      signedout_sub: "Staff: open the kiosk link with its key again.",
      open: "Connected",
      connecting: "Reconnecting\u2026",
      closed: "Disconnected",
      levels: { default: "Member", silver: "Silver", gold: "Gold", platinum: "Platinum" }
    },
    zh: {
      terminal: "\u7ec8\u7aef {id}",
      waiting_title: "\u6b22\u8fce\u5149\u4e34",
      waiting_sub: "\u8bf7\u51fa\u793a\u4f1a\u5458\u5361\u6216\u4f1a\u5458\u7801",
      reading: "\u6b63\u5728\u67e5\u8be2\u2026",
      greeting: "\u6b22\u8fce\u56de\u6765",
      points: "\u79ef\u5206",
      balance: "\u4f59\u989d",
      phone: "\u624b\u673a {value}",
      cached: "\u79bb\u7ebf\uff1a\u663e\u793a\u7684\u662f\u4e0a\u6b21\u540c\u6b65\u7684\u4fe1\u606f",
      unknown_title: "\u672a\u8bc6\u522b\u7684\u5361",
      unknown_sub: "\u8be5\u5361\u6216\u7801\u672a\u6ce8\u518c\uff0c\u8bf7\u8054\u7cfb\u5e97\u5458\u3002",
      offline_title: "\u4f1a\u5458\u4fe1\u606f\u6682\u4e0d\u53ef\u7528\uff08\u79bb\u7ebf\uff09",
      offline_sub: "\u4ecd\u53ef\u6b63\u5e38\u7ed3\u8d26\uff0c\u672c\u6b21\u5230\u5e97\u5c06\u7a0d\u540e\u8bb0\u5f55\u3002",
      token: "\u5361\u53f7 {value}",
      payment_code: "\u4ed8\u6b3e\u7801",
      signedout_title: "\u81ea\u52a9\u673a\u5df2\u9000\u51fa\u767b\u5f55",
      signedout_sub: "\u8bf7\u5e97\u5458\u4f7f\u7528\u5bc6\u94a5\u91cd\u65b0\u6253\u5f00\u81ea\u52a9\u673a\u94fe\u63a5\u3002",
      open: "\u5df2\u8fde\u63a5",
      connecting: "\u6b63\u5728\u91cd\u8fde\u2026",
      closed: "\u5df2\u65ad\u5f00",
      levels: {
        default: "\u666e\u901a\u4f1a\u5458",
        silver: "\u94f6\u5361\u4f1a\u5458",
        gold: "\u91d1\u5361\u4f1a\u5458",
        platinum: "\u767d\u91d1\u4f1a\u5458"
      }
    }
  };
  var L = LABELS[lang];

  var source = null;
  var lastEventId = "";
  var backoffMs = BACKOFF_FIRST_MS;
  var skewMs = 0; // gateway clock minus this browser's clock, from the hello event
  var currentEventId = "";
  var timers = { retry: 0, watchdog: 0, back: 0, reading: 0 };

  function $(id) {
    return document.getElementById(id);
  }

  function label(key, values) {
    var text = L[key];
    Object.keys(values || {}).forEach(function (name) {
      text = text.replace("{" + name + "}", values[name]);
    });
    return text;
  }

  function setText(id, text) {
    $(id).textContent = text; // never innerHTML: names come from central's data
  }

  function show(screen) {
    var sections = document.querySelectorAll("section.screen");
    for (var i = 0; i < sections.length; i++) {
      sections[i].hidden = sections[i].dataset.screen !== screen;
    }
    document.body.dataset.screen = screen;
  }

  function setConnection(state) {
    $("connection").dataset.state = state;
    document.body.dataset.connection = state;
    setText("connection-text", L[state]);
  }

  // Integer fen to yuan without floating point: 123456 -> "¥1,234.56".
  function formatYuan(fen) {
    var value = Math.trunc(Number(fen) || 0);
    var sign = value < 0 ? "-" : "";
    var abs = Math.abs(value);
    var cents = String(abs % 100);
    return sign + "\u00a5" + Math.floor(abs / 100).toLocaleString("en-US") + "." +
      (cents.length < 2 ? "0" + cents : cents);
  }

  function formatPoints(points) {
    return Math.trunc(Number(points) || 0).toLocaleString("en-US");
  }

  function tokenText(view) {
    if (!view.token_masked) {
      return L.payment_code; // payment codes are never sent to the page
    }
    return label(view.kind === "phone" ? "phone" : "token", { value: view.token_masked });
  }

  function backToWaitingLater() {
    clearTimeout(timers.back);
    timers.back = setTimeout(function () {
      currentEventId = "";
      show("waiting");
    }, displayMs);
  }

  function showMember(view) {
    var member = view.member || {};
    setText("member-greeting", L.greeting);
    setText("member-name", member.name || "");
    setText("member-level", L.levels[member.level] || member.level || "");
    setText("member-points", formatPoints(member.points));
    setText("member-balance", formatYuan(member.balance_fen));
    setText("member-phone", member.phone_masked ? label("phone", { value: member.phone_masked }) : "");
    $("member-cached").hidden = view.source !== "cache";
    show("member");
  }

  function showOffline(view) {
    setText("offline-token", tokenText(view));
    show("offline");
  }

  function showUnknown(view) {
    setText("unknown-token", tokenText(view));
    show("unknown");
  }

  function handleIdentify(view) {
    var age = Date.now() + skewMs - Date.parse(view.ts);
    if (age > displayMs) {
      return; // replayed after a reconnect, and already too old to greet anyone with
    }
    if (currentEventId && view.event_id < currentEventId) {
      return; // a late phase of an older input (event ids are ULIDs: they sort by time)
    }
    currentEventId = view.event_id;
    clearTimeout(timers.reading);
    if (view.phase === "detected") {
      show("reading");
      timers.reading = setTimeout(function () {
        if (currentEventId === view.event_id) {
          showOffline(view);
        }
      }, RESOLVE_WAIT_MS);
    } else if (view.phase === "resolved") {
      showMember(view);
    } else if (view.phase === "unknown") {
      showUnknown(view);
    } else {
      showOffline(view);
    }
    backToWaitingLater();
  }

  function kickWatchdog() {
    clearTimeout(timers.watchdog);
    timers.watchdog = setTimeout(function () {
      failed(); // no ping for too long: the connection is dead even if the socket is not
    }, WATCHDOG_MS);
  }

  function checkSession() {
    fetch("/kiosk/session?terminal=" + encodeURIComponent(terminal), {
      cache: "no-store",
      credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 401) {
        show("signedout");
      }
    }).catch(function () {
      /* the gateway is away: keep retrying */
    });
  }

  function failed() {
    if (source) {
      source.close();
      source = null;
    }
    clearTimeout(timers.watchdog);
    setConnection("closed");
    checkSession();
    clearTimeout(timers.retry);
    var delay = backoffMs * (0.5 + Math.random() / 2);
    backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
    timers.retry = setTimeout(connect, delay);
  }

  function connect() {
    var url = "/kiosk/events?terminal=" + encodeURIComponent(terminal);
    if (lastEventId) {
      url += "&last_event_id=" + encodeURIComponent(lastEventId);
    }
    var es = new EventSource(url);
    source = es;
    setConnection("connecting");
    kickWatchdog();
    es.addEventListener("open", function () {
      backoffMs = BACKOFF_FIRST_MS;
      setConnection("open");
      kickWatchdog();
    });
    es.addEventListener("hello", function (event) {
      var hello = JSON.parse(event.data);
      skewMs = Date.parse(hello.now) - Date.now();
      if (document.body.dataset.screen === "signedout") {
        show("waiting");
      }
      kickWatchdog();
    });
    es.addEventListener("ping", kickWatchdog);
    es.addEventListener("identify", function (event) {
      kickWatchdog();
      if (event.lastEventId) {
        lastEventId = event.lastEventId;
      }
      handleIdentify(JSON.parse(event.data));
    });
    es.addEventListener("error", function () {
      if (source !== es) {
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        failed(); // an HTTP error or a wrong type: the browser gave up, so retry ourselves
      } else {
        setConnection("connecting"); // the browser reconnects with Last-Event-ID
      }
    });
  }

  function start() {
    // The gateway already redirected away from ?key=; never leave it in the history anyway.
    var url = new URL(window.location.href);
    if (url.searchParams.has("key")) {
      url.searchParams.delete("key");
      window.history.replaceState(null, "", url.pathname + url.search);
    }
    setText("terminal-label", label("terminal", { id: terminal }));
    setText("waiting-title", L.waiting_title);
    setText("waiting-sub", L.waiting_sub);
    setText("reading-title", L.reading);
    setText("label-points", L.points);
    setText("label-balance", L.balance);
    setText("member-cached", L.cached);
    setText("unknown-title", L.unknown_title);
    setText("unknown-sub", L.unknown_sub);
    setText("offline-title", L.offline_title);
    setText("offline-sub", L.offline_sub);
    setText("signedout-title", L.signedout_title);
    setText("signedout-sub", L.signedout_sub);
    show("waiting");
    connect();
  }

  start();
})();
