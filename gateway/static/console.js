// Threadline agent console: plain JavaScript, no build step.
// Speaks the WebSocket protocol of docs/console-protocol.md.
"use strict";

(() => {
  const TOKEN_KEY = "threadline.console.token";
  const EVENT_KEY = "threadline.console.lastEventId";
  const STATUS_RANK = {
    accepted: 0, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5, undelivered: 6, failed: 6, received: 0,
  };
  const STATUS_LABEL = {
    accepted: "Accepted", queued: "Queued", sending: "Sending", sent: "Sent", delivered: "Delivered",
    read: "Read", undelivered: "Undelivered", failed: "Failed", received: "Received",
  };
  const CHANNEL_LABEL = { sms: "SMS", whatsapp: "WhatsApp", rcs: "RCS", voice: "Voice", email: "Email" };
  const AVATAR_COLORS = 7; // .avatar-0 … .avatar-6 in console.css (inline styles are blocked by the CSP)
  const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    ws: null,
    agent: "",
    channels: [],
    agents: [],
    queue: "unassigned",
    conversations: new Map(),
    haveSnapshot: false,
    lastEventId: sessionStorage.getItem(EVENT_KEY) || "",
    selected: "",
    thread: null, // {customerId, entries: Map(cursor -> entry), order: [], cursor, truncated}
    freshOpen: "", // ref of the open that replaces the thread (the others append to it)
    typing: new Map(),
    mode: "reply",
    lastTypingSent: 0,
    retry: 0,
    reconnectTimer: 0,
    renderQueued: false,
    refCounter: 0,
    sendingRef: "",
  };

  // --- small DOM helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toast(message, kind) {
    const node = el("div", { class: kind === "error" ? "toast toast-error" : "toast", text: message });
    $("toasts").append(node);
    setTimeout(() => node.remove(), kind === "error" ? 6000 : 3000);
  }

  function nextRef(prefix) {
    state.refCounter += 1;
    return `${prefix}-${Date.now().toString(36)}-${state.refCounter}-${Math.random().toString(36).slice(2, 7)}`;
  }

  // --- formatting ------------------------------------------------------------------------------

  function formatPhone(phone) {
    const match = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(phone || "");
    return match ? `+1 (${match[1]}) ${match[2]}-${match[3]}` : phone || "";
  }

  function displayName(conv) {
    return conv.name && conv.name !== conv.phone ? conv.name : formatPhone(conv.phone) || conv.customer_id;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function shortTime(seconds) {
    if (!seconds) return "";
    const date = new Date(seconds * 1000);
    return sameDay(date, new Date()) ? timeFormat.format(date) : dayFormat.format(date);
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getTime() - 86400000);
    if (sameDay(date, today)) return "Today";
    if (sameDay(date, yesterday)) return "Yesterday";
    return dayFormat.format(date);
  }

  function initials(conv) {
    const name = displayName(conv);
    if (/^[+\d(]/.test(name)) return (conv.phone || "").slice(-2);
    return name.split(/\s+/).map((part) => part[0]).join("").slice(0, 2).toUpperCase();
  }

  function avatarClass(id) {
    let hash = 0;
    for (const char of id) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
    return `avatar avatar-${hash % AVATAR_COLORS}`;
  }

  function channelBadge(channel) {
    return el("span", { class: `badge badge-${channel}`, text: CHANNEL_LABEL[channel] || channel });
  }

  function inQueue(conv, queue) {
    if (queue === "mine") return conv.assignee === state.agent;
    if (queue === "unassigned") return !conv.assignee && conv.status !== "resolved";
    return true;
  }

  function compareEventIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am !== bm ? am - bm : as - bs;
  }

  function noteEventId(eventId) {
    if (!eventId) return;
    if (!state.lastEventId || compareEventIds(eventId, state.lastEventId) > 0) {
      state.lastEventId = eventId;
      sessionStorage.setItem(EVENT_KEY, eventId);
    }
  }

  // --- connection ------------------------------------------------------------------------------

  function setConnection(kind, text) {
    const node = $("connection");
    node.dataset.state = kind;
    node.textContent = text;
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    toast("Not connected; your action was not sent.", "error");
    return false;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/console/ws`);
    state.ws = ws;
    setConnection(state.retry ? "reconnecting" : "connecting", state.retry ? "Reconnecting…" : "Connecting…");
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: state.token })));
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      handleFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (event.code === 1008) {
        signOut(event.reason || "Your token was refused.");
        return;
      }
      state.retry += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(state.retry, 5));
      setConnection("reconnecting", "Reconnecting…");
      state.reconnectTimer = setTimeout(connect, delay);
    });
  }

  function subscribe() {
    const frame = { type: "subscribe", queues: ["all"], ref: nextRef("sub") };
    // Resume only when this page already holds a list to bring up to date.
    if (state.haveSnapshot && state.lastEventId) frame.resume_from = state.lastEventId;
    send(frame);
  }

  // --- frames ----------------------------------------------------------------------------------

  function handleFrame(frame) {
    switch (frame.type) {
      case "welcome":
        state.agent = frame.agent;
        state.channels = frame.channels;
        state.agents = frame.agents;
        state.retry = 0;
        $("agent-name").textContent = frame.agent;
        setConnection("live", "Live");
        subscribe();
        if (state.selected) openThread(state.selected, true);
        break;
      case "queue":
        state.conversations = new Map(frame.conversations.map((conv) => [conv.customer_id, conv]));
        state.haveSnapshot = true;
        noteEventId(frame.event_id);
        scheduleRender();
        break;
      case "conversation.updated":
        onUpdate(frame);
        break;
      case "thread":
        onThread(frame);
        break;
      case "typing":
        onTyping(frame);
        break;
      case "ack":
        onAck(frame);
        break;
      case "error":
        if (frame.ref && frame.ref === state.sendingRef) setSending(false);
        toast(frame.message, "error");
        break;
      default:
        break;
    }
  }

  function onUpdate(frame) {
    const conv = frame.conversation;
    state.conversations.set(conv.customer_id, conv);
    noteEventId(frame.event_id);
    if (conv.customer_id === state.selected) {
      renderHeader();
      if (["inbound", "outbound", "status", "note"].includes(frame.reason)) refreshThread();
      if (frame.reason === "inbound") state.typing.delete(conv.customer_id);
    }
    scheduleRender();
  }

  function onAck(frame) {
    if (frame.op === "subscribe" && frame.more) {
      // A paged replay: this page is in; ask for the next one from where it ended.
      noteEventId(frame.event_id);
      send({ type: "subscribe", queues: ["all"], resume_from: frame.event_id, ref: nextRef("sub") });
      return;
    }
    if (frame.ref && frame.ref === state.sendingRef) {
      setSending(false);
      $("composer-text").value = "";
      updateHint();
    }
    const done = { claim: "Claimed", release: "Released", transfer: "Transferred", resolve: "Resolved", handback: "Handed back to automation" };
    if (done[frame.op]) toast(done[frame.op]);
  }

  function onTyping(frame) {
    if (frame.customer_id !== state.selected) return;
    state.typing.set(frame.customer_id, { agent: frame.agent, until: Date.now() + 4000 });
    renderTyping();
    setTimeout(renderTyping, 4100);
  }

  // --- queue list ------------------------------------------------------------------------------

  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      renderQueue();
    });
  }

  function sortedConversations() {
    return [...state.conversations.values()].sort((a, b) => b.last_at - a.last_at);
  }

  function renderQueue() {
    const all = sortedConversations();
    for (const tab of document.querySelectorAll(".tab")) {
      const queue = tab.dataset.queue;
      const members = all.filter((conv) => inQueue(conv, queue));
      const unread = members.filter((conv) => conv.unread > 0).length;
      tab.setAttribute("aria-selected", String(queue === state.queue));
      const count = tab.querySelector(".count");
      count.textContent = String(members.length);
      count.classList.toggle("has-unread", unread > 0);
      count.title = unread ? `${unread} with unread messages` : "";
    }
    const shown = all.filter((conv) => inQueue(conv, state.queue));
    const list = $("conversations");
    list.replaceChildren(...shown.map(conversationItem));
    $("queue-empty").hidden = shown.length > 0;
  }

  function statusTag(conv) {
    if (conv.status === "resolved") return el("span", { class: "pill pill-resolved", text: "Resolved" });
    if (conv.assignee === state.agent) return el("span", { class: "pill pill-mine", text: "You" });
    if (conv.assignee) return el("span", { class: "pill pill-assigned", text: conv.assignee });
    if (conv.automation === "active") return el("span", { class: "pill pill-auto", text: "Automation" });
    return el("span", { class: "pill pill-open", text: "Open" });
  }

  function conversationItem(conv) {
    const prefix = conv.preview_direction === "outbound" ? "↩ " : "";
    return el(
      "li",
      {
        class: conv.unread > 0 ? "conv-item unread" : "conv-item",
        "data-customer": conv.customer_id,
        "aria-selected": String(conv.customer_id === state.selected),
        tabindex: "0",
        onclick: () => select(conv.customer_id),
        onkeydown: (event) => { if (event.key === "Enter") select(conv.customer_id); },
      },
      el("span", { class: avatarClass(conv.customer_id), text: initials(conv) }),
      el("span", { class: "conv-title", text: displayName(conv) }),
      el("span", { class: "conv-time", text: shortTime(conv.last_at) }),
      el("span", { class: "conv-preview", text: prefix + (conv.preview || "No messages yet") }),
      el("span", { class: "conv-tags" }, conv.channels.map(channelBadge), statusTag(conv)),
      conv.unread > 0 ? el("span", { class: "unread-count", text: String(conv.unread) }) : null,
    );
  }

  // --- selected conversation ------------------------------------------------------------------

  function select(customerId) {
    if (state.selected !== customerId) {
      state.selected = customerId;
      state.thread = null;
      $("thread").replaceChildren();
      $("composer-text").value = "";
      fillChannelPicker();
    }
    $("empty").hidden = true;
    $("conversation").hidden = false;
    renderHeader();
    openThread(customerId, true);
    scheduleRender();
    $("composer-text").focus();
  }

  function openThread(customerId, fresh) {
    const frame = { type: "open", customer_id: customerId, ref: nextRef("open") };
    if (!fresh && state.thread && state.thread.cursor) frame.cursor = state.thread.cursor;
    if (!frame.cursor) state.freshOpen = frame.ref;
    send(frame);
  }

  function refreshThread() {
    openThread(state.selected, !state.thread);
  }

  function onThread(frame) {
    if (frame.customer_id !== state.selected) return;
    state.conversations.set(frame.customer_id, frame.conversation);
    if (!state.thread || frame.ref === state.freshOpen) {
      state.thread = { customerId: frame.customer_id, entries: [], messages: new Map(), cursor: "", truncated: frame.truncated };
    }
    const thread = state.thread;
    for (const entry of frame.entries) {
      if (thread.cursor && compareEventIds(entry.cursor, thread.cursor) <= 0) continue;
      thread.cursor = entry.cursor;
      if (entry.kind === "status") {
        const message = thread.messages.get(entry.message_id);
        if (message) {
          message.history.push(entry);
          if ((STATUS_RANK[entry.status] || 0) >= (STATUS_RANK[message.status] || 0)) message.status = entry.status;
          if (entry.error_code) message.error_code = entry.error_code;
        }
        continue;
      }
      if (entry.kind === "message") {
        entry.history = [];
        thread.messages.set(entry.message_id, entry);
      }
      thread.entries.push(entry);
    }
    renderThread();
    renderHeader();
    scheduleRender();
    if (frame.next_cursor) openThread(frame.customer_id, false);
  }

  function renderHeader() {
    const conv = state.conversations.get(state.selected);
    if (!conv) return;
    $("conv-name").textContent = displayName(conv);
    $("conv-phone").textContent = conv.name && conv.name !== conv.phone ? formatPhone(conv.phone) : "";
    $("conv-channels").replaceChildren(...conv.channels.map(channelBadge));
    const status = $("conv-status");
    if (conv.status === "resolved") {
      status.className = "pill pill-resolved";
      status.textContent = "Resolved";
    } else if (conv.assignee) {
      status.className = conv.assignee === state.agent ? "pill pill-mine" : "pill pill-assigned";
      status.textContent = conv.assignee === state.agent ? "Assigned to you" : `Assigned to ${conv.assignee}`;
    } else {
      status.className = "pill pill-open";
      status.textContent = "Unassigned";
    }
    const automation = $("conv-automation");
    automation.className = conv.automation === "paused" ? "pill pill-paused" : "pill pill-auto";
    automation.textContent = conv.automation === "paused" ? "Automation paused" : "Automation on";
    renderActions(conv);
  }

  function action(label, op, extra, klass) {
    return el("button", {
      class: klass || "btn",
      type: "button",
      "data-action": op,
      text: label,
      onclick: () => send({ type: op, customer_id: state.selected, ref: nextRef(op), ...(extra ? extra() : {}) }),
    });
  }

  function renderActions(conv) {
    const mine = conv.assignee === state.agent;
    const other = conv.assignee && !mine;
    const buttons = [];
    if (other) {
      buttons.push(el("span", { class: "muted small", text: `${conv.assignee} is handling this` }));
    } else if (mine) {
      const others = state.agents.filter((name) => name !== state.agent);
      if (others.length) {
        const picker = el("select", { id: "transfer-to", "aria-label": "Transfer to" },
          others.map((name) => el("option", { value: name, text: name })));
        buttons.push(picker, action("Transfer", "transfer", () => ({ to_agent: picker.value })));
      }
      buttons.push(action("Release", "release"));
    } else {
      buttons.push(action("Claim", "claim", null, "btn btn-primary"));
    }
    if (!other) {
      if (conv.automation === "paused") buttons.push(action("Hand back", "handback"));
      if (conv.status !== "resolved") buttons.push(action("Resolve", "resolve", null, "btn btn-ok"));
    }
    $("conv-actions").replaceChildren(...buttons);
  }

  function routingDetails(entry) {
    const lines = [
      `${entry.direction === "inbound" ? "Received" : "Sent"} ${fullFormat.format(new Date(entry.at * 1000))} (${TIME_ZONE})`,
      `Channel: ${CHANNEL_LABEL[entry.channel] || entry.channel}${entry.provider ? ` via ${entry.provider}` : ""}`,
    ];
    if (entry.address) lines.push(`Address: ${entry.address}`);
    if (entry.segments) lines.push(`Segments: ${entry.segments}`);
    if (entry.provider_message_id) lines.push(`Provider id: ${entry.provider_message_id}`);
    lines.push(`Message id: ${entry.message_id}`);
    if (entry.error_code) lines.push(`Error code: ${entry.error_code}`);
    for (const step of entry.history || []) {
      const code = step.error_code ? ` (${step.error_code})` : "";
      lines.push(`${timeFormat.format(new Date(step.at * 1000))} ${STATUS_LABEL[step.status] || step.status}${code}`);
    }
    return lines.join("\n");
  }

  function messageNode(entry) {
    const failed = entry.status === "failed" || entry.status === "undelivered";
    const meta = [el("span", { text: timeFormat.format(new Date(entry.at * 1000)) }), channelBadge(entry.channel)];
    if (entry.direction === "outbound") {
      if (entry.agent) meta.unshift(el("span", { text: entry.agent === state.agent ? "You" : entry.agent }));
      const label = STATUS_LABEL[entry.status] || entry.status || "";
      const code = failed && entry.error_code ? ` · ${entry.error_code}` : "";
      const tick = entry.status === "delivered" || entry.status === "read" ? " ✓✓" : entry.status === "sent" ? " ✓" : "";
      meta.push(el("span", { class: `msg-status msg-status-${entry.status}`, text: label + tick + code }));
    }
    return el(
      "li",
      { class: `msg ${entry.direction}${failed ? " failed" : ""}`, "data-message": entry.message_id },
      el("div", { class: "bubble", text: entry.body || "" }),
      el("div", { class: "msg-meta", title: routingDetails(entry) }, meta),
    );
  }

  function noteNode(entry) {
    const who = entry.agent === state.agent ? "You" : entry.agent;
    return el(
      "li",
      { class: "note", "data-note": entry.message_id },
      el("div", { class: "note-head", text: `Internal note · ${who} · ${timeFormat.format(new Date(entry.at * 1000))}` }),
      el("div", { class: "note-body", text: entry.body || "" }),
    );
  }

  // Routing, event and engagement entries: the one-line summary the thread API gives them.
  function systemNode(entry) {
    const text = entry.summary || [entry.kind, entry.event || entry.name, entry.detail].filter(Boolean).join(" · ");
    return el(
      "li",
      { class: `system system-${entry.kind}`, "data-kind": entry.kind, title: fullFormat.format(new Date(entry.at * 1000)) },
      el("span", { class: "system-time", text: timeFormat.format(new Date(entry.at * 1000)) }),
      el("span", { class: "system-text", text }),
    );
  }

  function entryNode(entry) {
    if (entry.kind === "note") return noteNode(entry);
    if (entry.kind === "message") return messageNode(entry);
    return systemNode(entry);
  }

  function renderThread() {
    const list = $("thread");
    const nodes = [];
    if (state.thread.truncated) nodes.push(el("li", { class: "thread-truncated muted small", text: "Earlier messages are not shown" }));
    let lastDay = null;
    for (const entry of state.thread.entries) {
      const date = new Date(entry.at * 1000);
      if (!lastDay || !sameDay(lastDay, date)) {
        nodes.push(el("li", { class: "day", text: dayLabel(date) }));
        lastDay = date;
      }
      nodes.push(entryNode(entry));
    }
    list.replaceChildren(...nodes);
    list.scrollTop = list.scrollHeight;
  }

  function renderTyping() {
    const node = $("typing");
    const typing = state.typing.get(state.selected);
    if (typing && typing.until > Date.now()) {
      node.textContent = `${typing.agent} is typing…`;
      node.hidden = false;
    } else {
      node.hidden = true;
    }
  }

  // --- composer --------------------------------------------------------------------------------

  function fillChannelPicker() {
    const conv = state.conversations.get(state.selected);
    const options = new Set([...(conv ? conv.channels : []), ...state.channels]);
    const picker = $("composer-channel");
    picker.replaceChildren(...[...options].map((channel) => {
      const enabled = state.channels.includes(channel);
      return el("option", { value: channel, text: CHANNEL_LABEL[channel] + (enabled ? "" : " (not enabled)") });
    }));
    const preferred = conv && conv.last_channel ? conv.last_channel : state.channels[0];
    if (preferred) picker.value = preferred;
  }

  function setMode(mode) {
    state.mode = mode;
    $("composer").dataset.mode = mode;
    for (const tab of document.querySelectorAll(".composer-tab")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.mode === mode));
    }
    $("composer-text").placeholder = mode === "note" ? "Write an internal note (only agents see it)…" : "Write a reply…";
    $("composer-send").textContent = mode === "note" ? "Add note" : "Send";
    updateHint();
  }

  function updateHint() {
    const length = $("composer-text").value.length;
    const keys = /Mac|iPhone|iPad/.test(navigator.platform) ? "⌘ Enter" : "Ctrl Enter";
    $("composer-hint").textContent = length ? `${length} characters · ${keys} to send` : `${keys} to send`;
  }

  function setSending(busy) {
    $("composer-send").disabled = busy;
    if (!busy) state.sendingRef = "";
  }

  function submitComposer() {
    const text = $("composer-text").value.trim();
    if (!text || !state.selected || state.sendingRef) return;
    const ref = nextRef(state.mode);
    const frame = state.mode === "note"
      ? { type: "note", customer_id: state.selected, text, ref }
      : { type: "reply", customer_id: state.selected, text, channel: $("composer-channel").value, ref };
    if (send(frame)) {
      state.sendingRef = ref;
      setSending(true);
    }
  }

  function onComposerInput() {
    updateHint();
    const now = Date.now();
    if (state.mode === "reply" && state.selected && now - state.lastTypingSent > 3000) {
      state.lastTypingSent = now;
      send({ type: "typing", customer_id: state.selected });
    }
  }

  // --- sign in / out ---------------------------------------------------------------------------

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("timezone").textContent = `Times in ${TIME_ZONE}`;
    connect();
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EVENT_KEY);
    state.token = "";
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close(1000, "signed out");
    clearTimeout(state.reconnectTimer);
    state.conversations = new Map();
    state.haveSnapshot = false;
    state.lastEventId = "";
    state.selected = "";
    $("app").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = reason || "";
    error.hidden = !reason;
    $("token").focus();
  }

  // A sign-in link (`threadline serve` prints one) carries a one-time login token in the URL
  // fragment, which browsers never send to the server. It is taken out of the address bar at
  // once and exchanged, a single time, for an agent token of this tab's own.
  async function signInFromLink() {
    const match = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash);
    if (!match) return false;
    history.replaceState(null, "", location.pathname + location.search);
    try {
      const response = await fetch("/v1/console/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ login_token: match[1] }),
      });
      const body = await response.json();
      if (!response.ok) {
        signOut(`${body.error.message}. Ask for a new link (restart \`threadline serve\`) or paste an agent token.`);
        return true;
      }
      state.token = body.token;
      sessionStorage.setItem(TOKEN_KEY, state.token);
      showApp();
    } catch (err) {
      signOut("Could not sign in with this link; is the gateway running?");
    }
    return true;
  }

  async function init() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      if (!state.token) return;
      sessionStorage.setItem(TOKEN_KEY, state.token);
      $("token").value = "";
      showApp();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        state.queue = tab.dataset.queue;
        renderQueue();
      });
    }
    for (const tab of document.querySelectorAll(".composer-tab")) {
      tab.addEventListener("click", () => setMode(tab.dataset.mode));
    }
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      submitComposer();
    });
    $("composer-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submitComposer();
      }
    });
    $("composer-text").addEventListener("input", onComposerInput);
    setMode("reply");
    setInterval(scheduleRender, 60000); // relative times ("Today"/dates) stay right
    if (await signInFromLink()) return;
    if (state.token) showApp();
    else signOut("");
  }

  init();
})();
