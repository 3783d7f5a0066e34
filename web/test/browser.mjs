// Drives headless Debian Chromium with playwright-core for the end-to-end tests
// (tests/e2e_web.rs runs it). One JSON line on stdout per milestone; exit 0 on success.
//
//   node browser.mjs agent-call URL AGENT PASSWORD NOTES [MIC.wav]
//   node browser.mjs bad-login URL AGENT WRONG_PASSWORD
//   node browser.mjs wallboard URL TOKEN
//   node browser.mjs agent-idle URL AGENT PASSWORD SECONDS   (logs in, ready, answers offers)
//   node browser.mjs second-login URL AGENT PASSWORD
//   node browser.mjs expire URL AGENT PASSWORD        (the engine has a short session_ttl_s)
//   node browser.mjs drop-call URL AGENT PASSWORD
//   node browser.mjs keypad URL AGENT PASSWORD        (answers, presses 5, hangs up)
//   node browser.mjs video-call URL AGENT PASSWORD [QUERY] [nocam]
//                                                     (answers a video call with the fake
//                                                      camera, or with none; reports the
//                                                      caller's picture, then stays until the
//                                                      caller hangs up; QUERY e.g. video=h264)
//   node browser.mjs no-webrtc URL AGENT PASSWORD     (RTCPeerConnection removed)
//   node browser.mjs insecure URL AGENT PASSWORD      (a page that is not a secure context)
//   node browser.mjs ice URL AGENT PASSWORD           (logs in, ready; reports the ICE servers
//                                                      its peer connection got)
//   node browser.mjs public-chat URL                 (the public chat page: two messages, a reply)
//   node browser.mjs wallboard-text URL TOKEN        (the text table shows a waiting conversation)
//   node browser.mjs chats URL AGENT PASSWORD         (three text conversations: replies to each
//                                                      with the digits of its first message,
//                                                      closes one, replies to the fourth)
//   node browser.mjs reports URL TOKEN DAY          (the reports page for DAY=YYYY-MM-DD: points
//                                                      per chart, a chart drawn to pixels, sorting,
//                                                      English, the agents CSV, a 390px screen)
//   node browser.mjs wallboard-floor URL TOKEN       (a floor of agents: counts by state,
//                                                      filters, search for 1001, sorting, the
//                                                      English labels, the live chart; then
//                                                      waits up to 30 s for the chart to move)
//   node browser.mjs wrap-up URL AGENT PASSWORD       (answers a call the caller ends, reads the
//                                                      after-call countdown twice, clicks done)
// The name dasan.test resolves to 127.0.0.1; with SPKI=<base64 SHA-256 of a certificate's
// public key> in the environment, that certificate is accepted (an engine's self-signed one).
import { chromium } from "playwright-core";

const [mode, url, ...rest] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function launch(mic, { allowMic = true } = {}) {
  const args = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
  ];
  args.push("--host-resolver-rules=MAP dasan.test 127.0.0.1");
  if (process.env.SPKI) args.push(`--ignore-certificate-errors-spki-list=${process.env.SPKI}`);
  // Without the fake permission UI, headless Chromium refuses the microphone.
  if (allowMic) args.push("--use-fake-ui-for-media-stream");
  if (mic) args.push(`--use-file-for-fake-audio-capture=${mic}`);
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args,
    ignoreDefaultArgs: ["--mute-audio"],
    timeout: 30000,
  });
}

async function waitFor(page, fn, arg, ms) {
  return page.waitForFunction(fn, arg, { timeout: ms, polling: 20 });
}

async function login(page, agent, password, query = "") {
  await page.goto(`${url}/agent${query}`);
  await page.fill("#agent", agent);
  await page.fill("#password", password);
  await page.keyboard.press("Enter"); // keyboard only
}

// Logs in, waits for the audio connection, clicks Ready and waits for the engine to agree.
async function loginReady(page, agent, password, query = "") {
  await login(page, agent, password, query);
  await waitFor(page, () => document.querySelector("#media").textContent !== "", null, 15000);
  await page.click("#ready");
  try {
    // The desk's state is polled four times a second: an offer may arrive before it
    // ever showed "ready", and it says the engine took the agent as ready.
    await waitFor(page, () => window.dasan.state === "ready" || window.dasan.events.includes("offer"), null, 20000);
  } catch (e) {
    // What the desk heard from the engine says which side lost the state.
    const seen = await page.evaluate(() => ({ state: window.dasan.state, events: window.dasan.events }));
    throw new Error(`never ready: ${JSON.stringify(seen)}: ${e}`);
  }
  say({ ready: true });
}

// Waits for the next offer and answers it with the mouse.
async function answerNext(page) {
  await waitFor(page, () => !document.querySelector("#offer").hidden, null, 60000);
  await page.click("#answer");
  await waitFor(page, () => !document.querySelector("#incall").hidden, null, 10000);
}

async function agentCall([agent, password, notes, mic]) {
  const browser = await launch(mic);
  const page = await browser.newPage();
  page.on("console", (m) => say({ console: m.text() }));
  // A test tone: the browser's noise suppression would take it for noise.
  await loginReady(page, agent, password, "?audio=raw");
  await waitFor(page, () => !document.querySelector("#offer").hidden, null, 60000);
  const offer = {
    caller: await page.textContent("#o-caller"),
    queue: await page.textContent("#o-queue"),
    language: await page.textContent("#o-language"),
  };
  say({ offer });
  await page.focus("#answer");
  await page.keyboard.press("Enter");
  await waitFor(page, () => !document.querySelector("#incall").hidden, null, 10000);
  // Listen for three seconds: the loudest received level and the answer-to-audio time.
  let peak = 0;
  for (let i = 0; i < 150; i++) {
    peak = Math.max(peak, await page.evaluate(() => window.dasan.rms));
    await sleep(20);
  }
  const answerToAudioMs = await page.evaluate(() => window.dasan.answerToAudioMs ?? null);
  const record = await page.evaluate(() => window.dasan.record);
  await page.fill("#category", "교통");
  await page.fill("#notes", notes);
  await page.click("#save");
  await waitFor(page, () => document.querySelector("#saved").textContent !== "", null, 5000);
  const saved = await page.textContent("#saved");
  await page.click("#hangup");
  await waitFor(page, () => document.querySelector("#incall").hidden, null, 5000);
  say({ done: true, rms: peak, answerToAudioMs, record, saved });
  await browser.close();
}

async function badLogin([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await login(page, agent, password);
  await waitFor(page, () => document.querySelector("#alert").textContent !== "", null, 10000);
  say({ alert: await page.textContent("#alert"), deskHidden: await page.isHidden("#desk") });
  await browser.close();
}

async function ice([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  const conf = await page.evaluate(() => window.dasan.pc.getConfiguration().iceServers);
  const media = await page.textContent("#media");
  say({ iceServers: conf, media });
  await browser.close();
}

async function wallboard([token]) {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${url}/supervisor`);
  await page.fill("#token", token);
  await page.keyboard.press("Enter");
  await waitFor(page, () => window.wallboard && window.wallboard.snapshots > 0, null, 10000);
  say({ connected: true });
  const seen = await waitFor(
    page,
    () => {
      const cell = document.querySelector('#queues tr[data-queue="general"] .waiting');
      return cell && cell.textContent !== "0" ? Date.now() : false;
    },
    null,
    30000,
  );
  say({ waiting_seen_ms: await seen.jsonValue(), calls: await page.locator("#calls tbody tr").count() });
  await browser.close();
}

// The wallboard's text table: waits for a text conversation waiting in general.
async function wallboardText([token]) {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${url}/supervisor`);
  await page.fill("#token", token);
  await page.keyboard.press("Enter");
  await waitFor(page, () => window.wallboard && window.wallboard.snapshots > 0, null, 10000);
  say({ connected: true });
  await waitFor(
    page,
    () => {
      const cell = document.querySelector('#text-queues tr[data-queue="general"] .waiting');
      return cell && cell.textContent !== "0";
    },
    null,
    30000,
  );
  const row = await page.locator('#text-queues tr[data-queue="general"] td').allTextContents();
  const chats = await page.locator("#agents tbody tr .chats").allTextContents();
  say({ text_row: row, chats, heading: await page.textContent("#text-panel h2") });
  await browser.close();
}

// The public chat page: two messages by keyboard, then the counsellor's reply.
async function publicChat() {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => say({ pageerror: String(e) }));
  await page.goto(`${url}/chat`);
  const box = page.getByRole("textbox");
  // The first message by keyboard; the second at once, in the same moment as the first
  // (before its chat has a token or a socket): it must join that chat, not start another.
  await box.fill("분실물 센터가 어디인가요?");
  await page.evaluate(() => {
    const form = document.getElementById("pub-form");
    const text = document.getElementById("pub-text");
    text.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    text.value = "지하철에서 잃어버렸어요";
    form.requestSubmit();
  });
  await step("the chat started", waitFor(page, () => window.chat.lines.length === 2 && document.querySelector("#pub-end:not([hidden])"), null, 10000));
  const reply = await step(
    "a counsellor's reply",
    waitFor(page, () => window.chat.lines.find((l) => l.from === "counsellor")?.text || false, null, 30000),
  );
  say({ reply: await reply.jsonValue(), shown: await page.locator("#pub-log li").count() });
  // A moment for the agent's phone to get its own acknowledgement before the end notice.
  await sleep(1000);
  await page.click("#pub-end");
  await step("closed", waitFor(page, () => window.chat.closed, null, 10000));
  say({ closed: true });
  await browser.close();
}

async function agentIdle([agent, password, seconds]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  const end = Date.now() + Number(seconds) * 1000;
  let offers = 0;
  while (Date.now() < end) {
    if (await page.isVisible("#offer")) {
      offers++;
      say({ offer: await page.textContent("#o-caller") });
      await page.click("#answer");
      await waitFor(page, () => !document.querySelector("#incall").hidden, null, 10000);
      await sleep(500);
      // The caller may have hung up already.
      await page.click("#hangup", { timeout: 1000 }).catch(() => undefined);
      await waitFor(page, () => document.querySelector("#incall").hidden, null, 5000);
    }
    await sleep(50);
  }
  say({ done: true, offers });
  await browser.close();
}

// The same agent logs in from a second browser while the first is logged in.
async function secondLogin([agent, password]) {
  const browser = await launch();
  const first = await browser.newPage();
  await login(first, agent, password);
  await waitFor(first, () => window.dasan && window.dasan.token, null, 15000);
  const second = await (await browser.newContext()).newPage();
  await login(second, agent, password);
  await waitFor(second, () => document.querySelector("#alert").textContent !== "", null, 10000);
  say({
    second: await second.textContent("#alert"),
    secondDeskHidden: await second.isHidden("#desk"),
    firstStillIn: await first.isVisible("#desk"),
  });
  await browser.close();
}

// Logs in with a short-lived login (the engine's session_ttl_s) and waits for it to end.
async function expire([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  const token = await page.evaluate(() => window.dasan.token);
  await waitFor(page, () => window.dasan.events.includes("error:session-expired"), null, 30000);
  const status = await page.evaluate(
    async (t) => (await fetch("/api/kb?q=bus", { headers: { Authorization: `Bearer ${t}` } })).status,
    token,
  );
  say({ expired: await page.textContent("#alert"), loginShown: await page.isVisible("#login"), apiStatus: status });
  await browser.close();
}

// Answers a call, then its WebRTC connection dies (the page closes it, as a network
// failure would end ICE).
async function dropCall([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  await answerNext(page);
  say({ answered: await page.evaluate(() => window.dasan.record) });
  await sleep(1000);
  await page.evaluate(() => window.dasan.pc.close());
  await waitFor(page, () => window.dasan.events.includes("error:media-failed"), null, 30000);
  say({ dropped: await page.textContent("#alert") });
  await browser.close();
}

// The microphone is refused: the page says so, and Ready is refused too.
async function noMic([agent, password]) {
  const browser = await launch(undefined, { allowMic: false });
  const page = await browser.newPage();
  await login(page, agent, password);
  await waitFor(page, () => document.querySelector("#alert").textContent !== "", null, 15000);
  const first = await page.textContent("#alert");
  await page.click("#ready");
  await waitFor(page, () => window.dasan.events.includes("error:media-not-ready"), null, 10000);
  say({ noMic: first, ready: await page.textContent("#alert") });
  await browser.close();
}

// A browser without WebRTC: the page says so at once and does not log in.
async function noWebrtc([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await page.addInitScript(() => {
    delete window.RTCPeerConnection;
    delete window.webkitRTCPeerConnection;
  });
  await page.goto(`${url}/agent`);
  await waitFor(page, () => document.querySelector("#alert").textContent !== "", null, 15000);
  const onLoad = await page.textContent("#alert");
  await login(page, agent, password);
  await sleep(1000);
  say({
    noWebrtc: onLoad,
    afterLogin: await page.textContent("#alert"),
    loginShown: await page.isVisible("#login"),
  });
  await browser.close();
}

// The desk over plain http:// at a DNS name: not a secure context, so no microphone.
async function insecure([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${url}/agent`);
  await waitFor(page, () => document.querySelector("#alert").textContent !== "", null, 15000);
  const onLoad = await page.textContent("#alert");
  await login(page, agent, password);
  await sleep(1000);
  say({
    insecure: onLoad,
    secureContext: await page.evaluate(() => window.isSecureContext),
    afterLogin: await page.textContent("#alert"),
    loginShown: await page.isVisible("#login"),
  });
  await browser.close();
}

// A supervisor sets an agent not ready from the wallboard.
async function supervise([token, agent]) {
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${url}/supervisor`);
  await page.fill("#token", token);
  await page.keyboard.press("Enter");
  const row = `#agents tr[data-agent="${agent}"]`;
  // The list shows a few hundred rows at most: the search box finds the agent on any floor.
  await page.fill("#f-search", agent);
  // The state cell shows the state in the page's language; data-state has the engine's name.
  const stateOf = (r) => {
    const td = document.querySelector(`${r} td[data-state]`);
    return td ? td.dataset.state + (td.dataset.reason ? ` (${td.dataset.reason})` : "") : "";
  };
  await waitFor(page, `(${stateOf})(${JSON.stringify(row)}).includes("ready")`, null, 15000);
  await page.locator(`${row} button`).nth(1).click();
  await waitFor(page, `(${stateOf})(${JSON.stringify(row)}).startsWith("not-ready")`, null, 5000);
  say({ state: await page.evaluate(`(${stateOf})(${JSON.stringify(row)})`), label: await page.textContent(`${row} td[data-state]`) });
  await browser.close();
}

// Answers a call, types a transfer target with the keyboard and transfers the caller.
async function transfer([agent, password, target]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  await answerNext(page);
  const record = await page.evaluate(() => window.dasan.record);
  await page.focus("#transfer-to");
  await page.keyboard.type(target);
  await page.focus("#transfer");
  await page.keyboard.press("Enter");
  await waitFor(page, () => document.querySelector("#incall").hidden, null, 10000);
  // Free for the next call once the caller has moved on.
  await waitFor(page, () => window.dasan.state === "ready", null, 10000);
  say({ transferred: record, state: await page.evaluate(() => window.dasan.state) });
  await browser.close();
}

// Answers a call, presses 5 on the keypad with the keyboard, hangs up.
async function keypad([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  await loginReady(page, agent, password);
  await answerNext(page);
  await page.focus(".keypad button:nth-child(5)");
  const key = await page.evaluate(() => document.activeElement.textContent);
  await page.keyboard.press("Enter");
  await sleep(1000);
  await page.click("#hangup");
  await waitFor(page, () => document.querySelector("#incall").hidden, null, 10000);
  say({ pressed: key });
  await browser.close();
}

// Answers a video call: the caller's picture plays (frames counted with
// requestVideoFrameCallback), the camera is sent, the caller's audio is heard.
async function videoCall([agent, password, query = "", cam = "cam"]) {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => say({ pageerror: String(e) }));
  if (cam === "nocam") {
    // A PC without a camera: the microphone is there, a camera is not.
    await page.addInitScript(() => {
      const md = navigator.mediaDevices;
      const real = md.getUserMedia.bind(md);
      md.getUserMedia = (c) =>
        c && c.video ? Promise.reject(new DOMException("no camera", "NotFoundError")) : real(c);
    });
  }
  await loginReady(page, agent, password, `?audio=raw${query ? `&${query}` : ""}`);
  await step("an offer", waitFor(page, () => !document.querySelector("#offer").hidden, null, 60000));
  say({ offer: { video: await page.isVisible("#o-video") } });
  await page.click("#answer");
  await step("in call", waitFor(page, () => !document.querySelector("#incall").hidden, null, 10000));
  const answered = Date.now();
  await step(
    "the caller's picture",
    waitFor(page, () => window.dasan.videoWidth > 0 && window.dasan.videoFrames > 10, null, 20000),
  );
  const firstFramesMs = Date.now() - answered;
  let peak = 0;
  for (let i = 0; i < 50; i++) {
    peak = Math.max(peak, await page.evaluate(() => window.dasan.rms));
    await sleep(20);
  }
  const v = await page.evaluate(() => {
    const el = document.querySelector("#caller-video");
    return {
      frames: window.dasan.videoFrames,
      width: el.videoWidth,
      height: el.videoHeight,
      camera: window.dasan.camera,
      label: el.getAttribute("aria-label"),
      shown: !document.querySelector("#video").hidden,
      alert: document.querySelector("#alert").textContent,
      codecs: window.dasan.pc
        .getTransceivers()
        .filter((t) => t.receiver.track.kind === "video")
        .map((t) => t.sender.getParameters().codecs?.[0]?.mimeType ?? ""),
    };
  });
  say({ video: { ...v, firstFramesMs, rms: peak } });
  // Hold for a second and a half: the caller's packets stop at the engine's bridge, and
  // when they resume the browser's decoder misses the frames between and asks for a
  // keyframe (a PLI, which must reach the caller); the picture must come back.
  await page.click("#hold");
  await sleep(1500);
  await page.click("#hold");
  const before = await page.evaluate(() => window.dasan.videoFrames);
  await step(
    "the picture after the hold",
    waitFor(page, (n) => window.dasan.videoFrames > n + 10, before, 15000),
  );
  say({ afterHold: { frames: (await page.evaluate(() => window.dasan.videoFrames)) - before } });
  await step("the caller hangs up", waitFor(page, () => document.querySelector("#incall").hidden, null, 60000));
  // Keyframe requests as Chromium counts them: sent (inbound video) and received (its camera).
  const plis = await page.evaluate(async () => {
    const out = { sent: 0, received: 0 };
    (await window.dasan.pc.getStats()).forEach((r) => {
      if (r.kind !== "video") return;
      if (r.type === "inbound-rtp") out.sent += r.pliCount ?? 0;
      if (r.type === "outbound-rtp") out.received += (r.pliCount ?? 0) + (r.firCount ?? 0);
    });
    return out;
  });
  say({
    done: true,
    plis,
    frames: await page.evaluate(() => window.dasan.videoFrames),
    videoHidden: await page.isHidden("#video"),
    camera: await page.evaluate(() => window.dasan.camera),
  });
  await browser.close();
}

// A step that gives up says which step it was.
async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message ? e.message : e}`);
  }
}

const tabSel = (conv) => `[role="tab"][data-conv="${conv.replace(/["\\]/g, "\\$&")}"]`;

// Whether a tab other than the selected one shows its unread badge.
const unreadShown = (page) =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll('#chat-tabs [role="tab"][aria-selected="false"] .badge')).some(
      (b) => !b.hidden && Number(b.firstChild.textContent) > 0,
    ),
  );

// Selects a conversation's tab with the mouse, reads its first message, types the reply
// with the keyboard and waits for the engine to accept it.
async function replyTo(page, conv) {
  await page.click(tabSel(conv));
  await step(
    `select ${conv}`,
    waitFor(
      page,
      (c) => window.dasan.chat === c && window.dasan.chats[c].unread === 0 && !document.querySelector("#chat-panel").hidden,
      conv,
      2000,
    ),
  );
  const first = await page.evaluate(() => document.querySelector('.chat-log:not([hidden]) .line.in .text')?.textContent ?? "");
  const digits = (first.match(/\d+/) || [""])[0];
  if (!digits) throw new Error(`no digits in the first message of ${conv}: ${JSON.stringify(first)}`);
  const text = `reply to ${digits}`;
  await page.click("#chat-text");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
  const state = await step(
    `reply in ${conv} accepted`,
    waitFor(
      page,
      ([c, txt]) => {
        const line = window.dasan.chats[c]?.lines.find((l) => l.dir === "out" && l.text === txt);
        return line && line.state !== "pending" ? `${line.state}${line.code ? ` ${line.code}` : ""}` : false;
      },
      [conv, text],
      10000,
    ),
  );
  const result = await state.jsonValue();
  if (result !== "sent") throw new Error(`reply in ${conv}: ${result}`);
  say({ replied: conv, digits });
}

async function chats([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => say({ pageerror: String(e) }));
  await loginReady(page, agent, password);
  const tabs = () => page.evaluate(() => Array.from(document.querySelectorAll('#chat-tabs [role="tab"]'), (t) => t.dataset.conv));
  await step(
    "three conversations with two messages each",
    waitFor(
      page,
      () => {
        const convs = Array.from(document.querySelectorAll('#chat-tabs [role="tab"]'), (t) => t.dataset.conv);
        return convs.length >= 3 && convs.every((c) => window.dasan.chats[c].lines.filter((l) => l.dir === "in").length >= 1);
      },
      null,
      30000,
    ),
  );
  const open = await tabs();
  say({ opened: open.length });
  let unreadSeen = await unreadShown(page);
  for (const conv of open.slice(0, 3)) {
    await replyTo(page, conv);
    unreadSeen ||= await unreadShown(page);
  }
  const first = open[0];
  await page.click(tabSel(first));
  await page.click("#chat-close");
  await step(`${first} closed`, waitFor(page, (sel) => !document.querySelector(sel), tabSel(first), 10000));
  say({ closed: first });
  const fourth = await step(
    "a fourth conversation",
    waitFor(
      page,
      (seen) => {
        const conv = Array.from(document.querySelectorAll('#chat-tabs [role="tab"]'), (t) => t.dataset.conv).find(
          (c) => !seen.includes(c),
        );
        return conv && window.dasan.chats[conv].lines.some((l) => l.dir === "in") ? conv : false;
      },
      open,
      30000,
    ),
  );
  unreadSeen ||= await unreadShown(page);
  await replyTo(page, await fourth.jsonValue());
  say({ done: true, unread_seen: unreadSeen });
  await browser.close();
}

// The wallboard of a whole floor: counts by state agree with the snapshot, the agent list
// filters, searches and is sorted by time in state, labels translate, the chart moves.
async function wallboardFloor([token]) {
  const browser = await launch();
  const page = await browser.newPage({ locale: "ko-KR" });
  page.on("pageerror", (e) => say({ pageerror: String(e) }));
  await page.goto(`${url}/supervisor`);
  await page.evaluate(() => localStorage.setItem("dasan-lang", "ko"));
  await page.reload();
  await page.fill("#token", token);
  await page.keyboard.press("Enter");
  await step("a snapshot", waitFor(page, () => window.wallboard && window.wallboard.snapshots > 0, null, 10000));
  const first = await page.evaluate(() => {
    const s = window.wallboard.last();
    const ready = (tr) => Number(tr?.querySelector('td[data-state="ready"]')?.textContent ?? NaN);
    return {
      agents_total: s.agents.length,
      rendered: window.wallboard.rendered,
      dom_rows: document.querySelectorAll("#agents tbody tr").length,
      counts_ready: ready(document.querySelector("#state-counts tr[data-all]")),
      snapshot_ready: s.agents.filter((a) => a.state === "ready").length,
      counts_ready_by_queue: Object.fromEntries(
        Array.from(document.querySelectorAll("#state-counts tr[data-queue]"), (tr) => [tr.dataset.queue, ready(tr)]),
      ),
      count_text: document.querySelector("#agents-count").textContent,
    };
  });
  say(first);
  if (first.rendered !== first.dom_rows) throw new Error(`rendered ${first.rendered} but ${first.dom_rows} rows`);
  if (first.counts_ready !== first.snapshot_ready) throw new Error(`ready: counted ${first.counts_ready}, snapshot ${first.snapshot_ready}`);

  await page.selectOption("#f-state", "ready");
  const ready = await page.evaluate(() => {
    const rows = Array.from(document.querySelectorAll("#agents tbody tr"));
    const total = window.wallboard.last().agents.filter((a) => a.state === "ready").length;
    return {
      ready_shown: rows.length,
      ready_expected: Math.min(total, 200),
      all_ready: rows.every((r) => r.querySelector("td[data-state]").dataset.state === "ready"),
      count_text: document.querySelector("#agents-count").textContent,
    };
  });
  say(ready);
  if (!ready.all_ready || ready.ready_shown !== ready.ready_expected) throw new Error(`state filter: ${JSON.stringify(ready)}`);
  await page.selectOption("#f-state", "");

  await page.fill("#f-search", "1001");
  const found = await page.evaluate(() => Array.from(document.querySelectorAll("#agents tbody tr"), (r) => r.dataset.agent));
  say({ search: "1001", rows: found.length, ids: found });
  if (found.length !== 1 || found[0] !== "1001") throw new Error(`search 1001 found ${JSON.stringify(found)}`);
  // By name, in another case, when the dialplan names an agent.
  const named = await page.evaluate(() => window.wallboard.last().agents.find((a) => a.name));
  if (named) {
    await page.fill("#f-search", named.name.toLowerCase());
    const byName = await page.evaluate(() => Array.from(document.querySelectorAll("#agents tbody tr"), (r) => r.dataset.agent));
    say({ search_name: named.name, ids: byName });
    if (!byName.includes(named.id)) throw new Error(`search ${named.name} found ${JSON.stringify(byName)}`);
  }
  await page.fill("#f-search", "");

  const sorted = await page.evaluate(() => {
    const since = new Map(window.wallboard.last().agents.map((a) => [a.id, a.since_ms]));
    const rows = Array.from(document.querySelectorAll("#agents tbody tr"));
    const secs = (txt) => txt.split(":").reduce((acc, p) => acc * 60 + Number(p), 0);
    let ok = true;
    for (let i = 1; i < rows.length; i++) {
      const a = since.get(rows[i - 1].dataset.agent);
      const b = since.get(rows[i].dataset.agent);
      if (typeof a === "number" && typeof b === "number") ok &&= a <= b;
      else ok &&= secs(rows[i - 1].querySelector(".in-state").textContent) + 1 >= secs(rows[i].querySelector(".in-state").textContent);
    }
    return { sorted_by_time_in_state: ok, rows: rows.length };
  });
  say(sorted);
  if (!sorted.sorted_by_time_in_state) throw new Error("the agent list is not sorted by time in state");

  const cellSel = "#agents tbody tr:first-child td[data-state]";
  const ko = await page.textContent(cellSel);
  if ((await page.evaluate(() => document.documentElement.lang)) !== "en") await page.click("#lang");
  await step("English", waitFor(page, () => document.documentElement.lang === "en", null, 5000));
  const en = await page.evaluate((sel) => {
    const td = document.querySelector(sel);
    return { text: td.textContent, state: td.dataset.state };
  }, cellSel);
  const english = {
    ready: "Ready", offered: "Offered", "on-call": "On call", "wrap-up": "Wrap-up",
    "busy-delay": "Busy delay", "not-ready": "Not ready", "logged-out": "Logged out",
  };
  say({ state_cell_ko: ko, state_cell_en: en.text, state: en.state });
  if (!en.text.startsWith(english[en.state] ?? "?")) throw new Error(`state cell in English: ${JSON.stringify(en)}`);

  const chart = () =>
    page.evaluate(() => {
      const pts = Array.from(document.querySelectorAll("#live-chart [data-point]"));
      const waiting = pts.filter((p) => p.dataset.series === "waiting").map((p) => Number(p.dataset.value));
      return { count: pts.length, sum: waiting.reduce((a, b) => a + b, 0), max: Math.max(0, ...waiting) };
    });
  const before = await chart();
  say({ live_points: before.count, waiting_sum: before.sum });
  if (before.count === 0) throw new Error("no points in #live-chart");
  const moved = await step(
    "the chart moved",
    waitFor(
      page,
      (b) => {
        const pts = Array.from(document.querySelectorAll("#live-chart [data-point]"));
        const waiting = pts.filter((p) => p.dataset.series === "waiting").map((p) => Number(p.dataset.value));
        const sum = waiting.reduce((a, c) => a + c, 0);
        return pts.length !== b.count || sum > b.sum || Math.max(0, ...waiting) > b.max ? { count: pts.length, sum } : false;
      },
      before,
      30000,
    ),
  );
  say({ chart_moved: true, ...(await moved.jsonValue()) });
  await browser.close();
}

// After-call work: the countdown shows once the caller hung up, counts down, and
// "I'm done" makes the agent ready at once.
async function wrapUp([agent, password]) {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => say({ pageerror: String(e) }));
  await loginReady(page, agent, password);
  await step("an offer answered", answerNext(page));
  say({ answered: await page.evaluate(() => window.dasan.record) });
  await step("the caller hangs up", waitFor(page, () => document.querySelector("#incall").hidden, null, 60000));
  await step(
    "the countdown",
    waitFor(page, () => !document.querySelector("#wrap-countdown").hidden && window.dasan.state === "wrap-up", null, 10000),
  );
  const first = await page.textContent("#wrap-countdown");
  await sleep(1100);
  const second = await page.textContent("#wrap-countdown");
  const n = (s) => Number((s.match(/\d+/) || [NaN])[0]);
  say({ countdown: [first, second], state_label: await page.textContent("#state"), done_visible: await page.isVisible("#wrap-done") });
  if (!(n(second) < n(first))) throw new Error(`the countdown did not decrease: ${first} then ${second}`);
  const clicked = Date.now();
  await page.click("#wrap-done");
  await step("ready after done", waitFor(page, () => window.dasan.state === "ready", null, 5000));
  const readyAfterDoneMs = Date.now() - clicked;
  await step("the countdown hides", waitFor(page, () => document.querySelector("#wrap-countdown").hidden, null, 2000));
  say({ ready_after_done_ms: readyAfterDoneMs, state_label: await page.textContent("#state") });
  await browser.close();
}

// The reports page for one day: every chart's points, one chart drawn to pixels, sorting
// the agents table, the English labels, the agents' CSV, and no sideways scrolling at 390px.
const REPORT_CHARTS = [
  "chart-volume",
  "chart-sl",
  "chart-asa",
  "chart-waits",
  "chart-abandon",
  "chart-categories",
  "chart-languages",
  "chart-channels",
  "chart-survey",
  "chart-survey-queue",
  "chart-fcr",
];

async function reports([token, day]) {
  if (!token || !/^\d{4}-\d{2}-\d{2}$/.test(day || "")) throw new Error("usage: reports URL TOKEN YYYY-MM-DD");
  const browser = await launch();
  const page = await browser.newPage({ locale: "ko-KR", viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => {
    errors.push(String(e));
    say({ pageerror: String(e) });
  });
  await page.goto(`${url}/reports`);
  await page.evaluate(() => {
    localStorage.setItem("dasan-lang", "ko");
    sessionStorage.removeItem("dasan-token");
  });
  await page.reload();
  await page.fill("#token", token);
  await page.keyboard.press("Enter");
  await page.fill("#from", day);
  await page.fill("#to", day);
  await page.click('#filters button[type="submit"]');
  // Only the newest request is drawn: wait for DAY's report (or an error).
  const loaded = await step(
    "the report",
    waitFor(
      page,
      (d) => {
        const alert = document.querySelector("#alert").textContent;
        if (alert) return `alert: ${alert}`;
        const r = window.reports;
        const last = r && r.last();
        return r && r.loads > 0 && last && last.from === d && last.to === d && !document.querySelector("#main").hasAttribute("aria-busy")
          ? "ok"
          : false;
      },
      day,
      30000,
    ),
  );
  const outcome = await loaded.jsonValue();
  if (outcome !== "ok") throw new Error(`the report: ${outcome}`);
  const count = () =>
    page.evaluate(
      (ids) =>
        Object.fromEntries(
          ids.map((id) => {
            const fig = document.getElementById(id);
            return [id, fig ? fig.querySelectorAll("[data-point]").length : -1];
          }),
        ),
      REPORT_CHARTS,
    );
  const charts = await count();
  const nodata = await page.evaluate(() => Array.from(document.querySelectorAll("figure.chart .nodata"), (p) => p.parentElement.id));
  say({
    loads: await page.evaluate(() => window.reports.loads),
    server_ms: await page.evaluate(() => window.reports.last().server_ms),
    meta: await page.textContent("#meta"),
    charts,
    nodata,
  });
  const missing = REPORT_CHARTS.filter((id) => charts[id] < 0);
  if (missing.length) throw new Error(`no figure for ${missing.join(", ")}`);
  for (const id of REPORT_CHARTS) {
    if (charts[id] === 0 && !nodata.includes(id)) throw new Error(`${id}: no points and no "no data" text`);
  }

  // The volume chart drawn into a canvas: its pixels that are not white.
  if (charts["chart-volume"] > 0) {
    const drawn = await step(
      "drawing chart-volume",
      page.evaluate(async () => {
        const svg = document.querySelector("#chart-volume svg");
        const [, , w, h] = svg.getAttribute("viewBox").split(/\s+/).map(Number);
        const clone = svg.cloneNode(true);
        clone.setAttribute("width", String(w));
        clone.setAttribute("height", String(h));
        const xml = new XMLSerializer().serializeToString(clone);
        const src = URL.createObjectURL(new Blob([xml], { type: "image/svg+xml" }));
        const img = new Image();
        await new Promise((ok, fail) => {
          img.onload = ok;
          img.onerror = () => fail(new Error("the serialized svg did not load as an image"));
          img.src = src;
        });
        const canvas = document.createElement("canvas");
        canvas.width = w;
        canvas.height = h;
        const ctx = canvas.getContext("2d");
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, w, h);
        ctx.drawImage(img, 0, 0);
        URL.revokeObjectURL(src);
        const d = ctx.getImageData(0, 0, w, h).data;
        let n = 0;
        const colours = new Set();
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240) {
            n++;
            colours.add(((d[i] >> 5) << 6) | ((d[i + 1] >> 5) << 3) | (d[i + 2] >> 5));
          }
        }
        return { n, colours: colours.size, w, h };
      }),
    );
    say({ nonblank_pixels: drawn.n, colours: drawn.colours, size: [drawn.w, drawn.h] });
    if (drawn.n === 0) throw new Error("chart-volume draws blank");
    // And what the screen shows: a screenshot of the whole page, read back pixel by pixel
    // (SHOT=<file> keeps it).
    const shot = await page.screenshot({ fullPage: true, path: process.env.SHOT || undefined });
    const screen = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      const colours = new Set();
      for (let i = 0; i < d.length; i += 4) {
        if (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240) {
          n++;
          colours.add(((d[i] >> 5) << 6) | ((d[i + 1] >> 5) << 3) | (d[i + 2] >> 5));
        }
      }
      return { n, colours: colours.size, w: c.width, h: c.height };
    }, shot.toString("base64"));
    say({ screenshot: screen });
    if (screen.n < 10000 || screen.colours < 8) throw new Error(`the screenshot is blank: ${JSON.stringify(screen)}`);
  }

  // Sorting: the agents table by calls, then reversed.
  const firstAgent = () => page.textContent("#agents-table tbody tr:first-child td:first-child");
  const callsHeader = '#agents-table th[data-col="calls"]';
  const before = await firstAgent();
  await page.click(`${callsHeader} button`);
  const aria1 = await page.getAttribute(callsHeader, "aria-sort");
  const after = await firstAgent();
  await page.click(`${callsHeader} button`);
  const aria2 = await page.getAttribute(callsHeader, "aria-sort");
  const reversed = await firstAgent();
  say({ sort: { before, after, reversed, aria_sort: [aria1, aria2] } });
  if (!aria1 || !aria2 || aria1 === aria2) throw new Error(`calls header aria-sort: ${aria1}, then ${aria2}`);

  // English.
  const headingKo = await page.textContent("h1");
  await page.click("#lang");
  await step("English", waitFor(page, () => document.documentElement.lang === "en", null, 5000));
  const heading = await page.textContent("h1");
  const again = await count();
  say({
    heading,
    heading_ko: headingKo,
    caption: await page.textContent("#chart-volume figcaption"),
    calls_header: await page.textContent(`${callsHeader} button`),
  });
  if (heading === headingKo) throw new Error("the heading did not change language");
  if (JSON.stringify(again) !== JSON.stringify(charts)) throw new Error(`points changed with the language: ${JSON.stringify(again)}`);

  // The agents' CSV through its button.
  const download = await step(
    "the agents CSV",
    Promise.all([page.waitForEvent("download", { timeout: 10000 }), page.click('button.csv[data-section="agents"]')]).catch(
      async (e) => {
        throw new Error(`${e.message} (alert: ${await page.textContent("#alert")})`);
      },
    ),
  );
  const { readFile } = await import("node:fs/promises");
  const text = await readFile(await download[0].path(), "utf8");
  const csvHeader = text.replace(/^\uFEFF/, "").split(/\r?\n/)[0];
  say({ csv_header: csvHeader, csv_file: download[0].suggestedFilename() });
  if (!csvHeader) throw new Error("the agents CSV is empty");

  // A phone's width: nothing wider than the screen (tables scroll in their own box).
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(400);
  const narrow = await page.evaluate(() => document.documentElement.scrollWidth);
  say({ narrow_scroll_width: narrow });
  if (narrow > 392) throw new Error(`the page is ${narrow}px wide at 390px`);

  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  say({ done: true });
  await browser.close();
}

const modes = {
  reports,
  "wallboard-floor": wallboardFloor,
  "wrap-up": wrapUp,
  "public-chat": publicChat,
  "wallboard-text": wallboardText,
  chats,
  keypad,
  "video-call": videoCall,
  transfer,
  "no-mic": noMic,
  "no-webrtc": noWebrtc,
  insecure,
  ice,
  supervise,
  "agent-call": agentCall,
  "bad-login": badLogin,
  wallboard,
  "agent-idle": agentIdle,
  "second-login": secondLogin,
  expire,
  "drop-call": dropCall,
};
const run = modes[mode];
if (!run) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
const limit = setTimeout(() => {
  say({ error: "timed out" });
  process.exit(3);
}, 120000);
run(rest)
  .then(() => {
    clearTimeout(limit);
    process.exit(0);
  })
  .catch((e) => {
    say({ error: String(e && e.stack || e) });
    process.exit(1);
  });
