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
  await waitFor(page, () => window.dasan.state === "ready", null, 10000);
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
  await waitFor(page, (r) => document.querySelector(r)?.textContent.includes("ready"), row, 15000);
  await page.locator(`${row} button`).nth(1).click();
  await waitFor(page, (r) => document.querySelector(`${r} td:nth-child(2)`)?.textContent.startsWith("not-ready"), row, 5000);
  say({ state: await page.textContent(`${row} td:nth-child(2)`) });
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

const modes = {
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
