// Runs files/mod_wsgi_ws_sidecar/push.js in Node with a fake WebSocket and a fake clock, then
// plays the steps given as JSON on the command line; prints what the page
// saw (handlers called, requests sent, timers set) as JSON.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [scriptPath, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
const seen = { sent: [], timers: [], events: [], thrown: [] };
const timers = [];

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    FakeWebSocket.last = this;
  }
  send(text) {
    seen.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
}
FakeWebSocket.OPEN = 1;

const window = {
  location: { href: "https://site.example/page" },
  setTimeout: (fn, ms) => {
    seen.timers.push(ms);
    timers.push(fn);
    return timers.length;
  },
  clearTimeout: () => {},
};
const context = vm.createContext({ window, WebSocket: FakeWebSocket, URL, Math, JSON, Map, Number, console });
vm.runInContext(fs.readFileSync(scriptPath, "utf8"), context);

const feed = new window.PushFeed("/push/ws", {
  getToken: async (channel) => `token-${channel}`,
  onStatus: (s) => seen.events.push(["status", s]),
});
const record = (name) => (...args) => seen.events.push([name, ...args]);

(async () => {
  for (const step of steps) {
    const ws = FakeWebSocket.last;
    if (step.open) {
      ws.readyState = 1;
      ws.onopen();
    } else if (step.subscribe) {
      feed.subscribe(step.subscribe, {
        onMessage: record("message"),
        onReset: record("reset"),
        onRefused: record("refused"),
        onRevoked: record("revoked"),
      });
    } else if ("frame" in step) {
      try {
        ws.onmessage({ data: step.frame });
      } catch (error) {
        seen.thrown.push(String(error));
      }
    } else if (step.fire) {
      timers.splice(0).forEach((fn) => fn());
    }
    await new Promise((resolve) => setImmediate(resolve)); // let request()'s await settle
  }
  process.stdout.write(JSON.stringify(seen));
})();
