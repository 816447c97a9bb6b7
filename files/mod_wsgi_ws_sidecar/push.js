// PushFeed: the browser's side of the push channel, without dependencies.
//
//   const feed = new PushFeed("/push/ws", {
//     getToken: async (channel) => (await fetch(`/token?channel=${channel}`)).text(),
//     onStatus: (state) => ...,   // "connecting", "live", "interrupted", "reconnecting"
//   });
//   feed.subscribe("orders.42", {
//     onMessage: (data, id) => ...,  // each message once, in order, across reconnects
//     onReset: (reason) => ...,      // messages were missed: reload the state from the app
//     onRefused: (reason) => ...,    // no access (a bad or expired token), or unavailable
//     onRevoked: (reason) => ...,    // the application ended this access (push.revoke)
//   });
//
// Every message carries its position in the channel's history. The feed
// remembers the last one per channel and, when the connection comes back
// (a network blip, the sidecar or Apache restarting), asks for what followed
// it: the server replays exactly that, or says "reset" when the history no
// longer reaches back. Reconnects, and subscriptions refused while Redis is
// out of reach, back off (0.5 s doubling to 10 s, with jitter); a message at
// or before the last position is never delivered twice; a frame that is not
// JSON is ignored. A private channel's token is renewed before it expires
// (getToken is asked again); if it expires all the same, the channel is
// subscribed to again from its last position.
(function (global) {
  "use strict";

  const FIRST_DELAY = 500;
  const MAX_DELAY = 10000;
  // Refusals that pass: the request is made again, later.
  const RETRIED = /^(unavailable|too many requests)/;

  // Half to all of a delay: clients cut off together do not come back together.
  function jittered(delay) {
    return delay * (0.5 + Math.random() / 2);
  }

  // Positions are "MILLISECONDS-SEQUENCE"; both parts fit a double exactly.
  function compare(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  class PushFeed {
    constructor(url, options = {}) {
      this.url = new URL(url, global.location.href);
      this.url.protocol = this.url.protocol === "https:" ? "wss:" : "ws:";
      this.getToken = options.getToken || (async () => null);
      this.onStatus = options.onStatus || (() => {});
      this.channels = new Map();
      this.delay = FIRST_DELAY;
      this.ws = null;
      this.closed = false;
      this.connect();
    }

    subscribe(channel, handlers = {}) {
      const state = {
        handlers,
        epoch: handlers.epoch || null,
        last: handlers.since || null,
        retry: FIRST_DELAY,
      };
      this.channels.set(channel, state);
      this.request(channel, state);
      return state;
    }

    unsubscribe(channel) {
      this.channels.delete(channel);
      this.sendJson({ type: "unsubscribe", channel });
    }

    close() {
      this.closed = true;
      if (this.ws) this.ws.close();
    }

    connect() {
      this.onStatus("connecting");
      const ws = new WebSocket(this.url.href);
      this.ws = ws;
      ws.onopen = () => {
        this.delay = FIRST_DELAY;
        for (const [channel, state] of this.channels) this.request(channel, state);
      };
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return; // not a frame of this protocol: ignored, the feed goes on
        }
        if (message && typeof message === "object") this.receive(message);
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (this.closed) return;
        this.onStatus("reconnecting");
        global.setTimeout(() => this.connect(), jittered(this.delay));
        this.delay = Math.min(this.delay * 2, MAX_DELAY);
      };
    }

    sendJson(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    async request(channel, state) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return; // sent again on open
      const message = { type: "subscribe", channel };
      const token = await this.getToken(channel);
      if (token) message.token = token;
      if (state.last !== null) {
        message.since = state.last;
        message.epoch = state.epoch;
      }
      // Still the same connection and still wanted: else the next open asks.
      if (this.ws === ws && this.channels.get(channel) === state) this.sendJson(message);
    }

    // A token's subscription is renewed with a fresh token (getToken) once
    // two thirds of its time are gone, on the same connection.
    renewLater(channel, state, expiresIn) {
      if (typeof expiresIn !== "number") return;
      const ws = this.ws;
      global.clearTimeout(state.renewTimer);
      state.renewTimer = global.setTimeout(async () => {
        if (this.ws !== ws || this.channels.get(channel) !== state) return;
        const token = await this.getToken(channel);
        if (token && this.ws === ws && this.channels.get(channel) === state) {
          this.sendJson({ type: "renew", channel, token });
        }
      }, (expiresIn * 1000 * 2) / 3);
    }

    receive(message) {
      if (message.type === "status") {
        this.onStatus(message.feed);
        return;
      }
      const state = this.channels.get(message.channel);
      if (!state) return;
      const on = state.handlers;
      switch (message.type) {
        case "message":
          if (state.last !== null && compare(message.id, state.last) <= 0) return; // seen
          state.last = message.id;
          if (on.onMessage) on.onMessage(message.data, message.id);
          break;
        case "subscribed":
          state.retry = FIRST_DELAY;
          state.epoch = message.epoch;
          if (state.last === null) state.last = message.position;
          this.renewLater(message.channel, state, message.expires_in);
          this.onStatus("live");
          if (on.onSubscribed) on.onSubscribed(message);
          break;
        case "renewed":
          this.renewLater(message.channel, state, message.expires_in);
          break;
        case "expired":
          // Not renewed in time: subscribed again from the last position, so
          // nothing is missed and nothing comes twice.
          this.request(message.channel, state);
          break;
        case "revoked":
          this.channels.delete(message.channel);
          if (on.onRevoked) on.onRevoked(message.reason);
          break;
        case "reset":
          state.epoch = message.epoch;
          state.last = message.position;
          if (on.onReset) on.onReset(message.reason);
          break;
        case "refused":
          if (on.onRefused) on.onRefused(message.reason);
          // Redis out of reach, or too many requests: asked again later,
          // each channel backing off on its own, with jitter.
          if (typeof message.reason === "string" && RETRIED.test(message.reason)) {
            const ws = this.ws;
            global.setTimeout(() => {
              if (this.ws === ws && this.channels.get(message.channel) === state) {
                this.request(message.channel, state);
              }
            }, jittered(state.retry));
            state.retry = Math.min(state.retry * 2, MAX_DELAY);
          }
          break;
        default:
          break;
      }
    }
  }

  global.PushFeed = PushFeed;
})(window);
