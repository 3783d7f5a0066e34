// Korean and English text for both pages. Elements carry data-t="key"; t(key) for the rest.
type Dict = Record<string, string>;

const ko: Dict = {
  title_agent: "120 다산콜 상담 데스크",
  title_sup: "120 다산콜 상황판",
  agent_id: "상담사 번호",
  password: "비밀번호",
  login: "로그인",
  logout: "로그아웃",
  ready: "대기",
  not_ready: "이석",
  reason: "사유",
  r_break: "휴식",
  r_meal: "식사",
  r_training: "교육",
  r_research: "자료 조사",
  state: "상태",
  incoming: "전화가 왔습니다",
  caller: "발신 번호",
  queue: "대기열",
  language: "언어",
  waited: "대기 시간",
  answer: "받기",
  decline: "거절",
  hangup: "끊기",
  mute: "음소거",
  unmute: "음소거 해제",
  hold: "보류",
  unhold: "보류 해제",
  transfer: "호전환",
  transfer_to: "전환 대상 (대기열 또는 번호)",
  keypad: "다이얼 패드",
  kb: "상담 지식 검색",
  search: "검색",
  record: "상담 기록",
  category: "분류",
  notes: "메모",
  save: "저장",
  saved: "저장했습니다",
  no_webrtc: "이 브라우저는 WebRTC를 지원하지 않아 전화를 받을 수 없습니다.",
  insecure:
    "보안 연결(https://)이 필요합니다: 브라우저는 보안 연결이 아닌 페이지에 마이크를 허용하지 않습니다. 관리자에게 https:// 주소를 받아 다시 접속하세요.",
  no_mic: "마이크 사용이 허용되지 않았습니다. 마이크를 허용한 뒤 다시 로그인하세요.",
  media_up: "음성 연결됨",
  media_down: "음성 연결이 끊겼습니다",
  on_call: "통화 중",
  ended: "통화가 끝났습니다",
  token: "감독자 토큰",
  connect: "연결",
  queues: "대기열",
  agents: "상담사",
  calls: "진행 중인 통화",
  waiting: "대기",
  longest: "최장 대기",
  sl: "서비스 레벨",
  asa: "평균 응답",
  abandon: "포기율",
  in_state: "상태 시간",
  agent: "상담사",
  live: "실시간",
  offline: "연결 끊김",
  lang_switch: "English",
  e_bad_login: "상담사 번호 또는 비밀번호가 틀렸습니다.",
  e_login_blocked: "로그인 실패가 너무 많습니다. 몇 분 후에 다시 시도하세요.",
  token_refused: "토큰이 거부되었습니다 (감독자 또는 보고용 토큰이 필요합니다).",
  e_already_logged_in: "이 상담사는 다른 브라우저에 이미 로그인되어 있습니다.",
  e_session_expired: "로그인 시간이 만료되었습니다. 다시 로그인하세요.",
  e_media_failed: "브라우저와의 음성 연결이 끊겼습니다. 다시 로그인하세요.",
  e_engine_unreachable: "교환기와의 연결이 끊겼습니다. 잠시 후 다시 로그인하세요.",
  e_media_not_ready: "음성 연결이 아직 되지 않았습니다. 마이크를 허용했는지 확인하세요.",
};

const en: Dict = {
  title_agent: "120 Dasan agent desktop",
  title_sup: "120 Dasan wallboard",
  agent_id: "Agent id",
  password: "Password",
  login: "Log in",
  logout: "Log out",
  ready: "Ready",
  not_ready: "Not ready",
  reason: "Reason",
  r_break: "Break",
  r_meal: "Meal",
  r_training: "Training",
  r_research: "Research",
  state: "State",
  incoming: "Incoming call",
  caller: "Caller",
  queue: "Queue",
  language: "Language",
  waited: "Waited",
  answer: "Answer",
  decline: "Decline",
  hangup: "Hang up",
  mute: "Mute",
  unmute: "Unmute",
  hold: "Hold",
  unhold: "Resume",
  transfer: "Transfer",
  transfer_to: "Transfer to (queue or number)",
  keypad: "Keypad",
  kb: "Knowledge base",
  search: "Search",
  record: "Consultation record",
  category: "Category",
  notes: "Notes",
  save: "Save",
  saved: "Saved",
  no_webrtc: "This browser has no WebRTC: calls cannot be taken here.",
  insecure:
    "A secure connection (https://) is needed: browsers give the microphone only to secure pages. Open the desk's https:// address (ask your administrator).",
  no_mic: "Microphone permission was denied. Allow the microphone, then log in again.",
  media_up: "Audio connected",
  media_down: "Audio connection lost",
  on_call: "On call",
  ended: "Call ended",
  token: "Supervisor token",
  connect: "Connect",
  queues: "Queues",
  agents: "Agents",
  calls: "Calls in progress",
  waiting: "Waiting",
  longest: "Longest wait",
  sl: "Service level",
  asa: "ASA",
  abandon: "Abandoned",
  in_state: "Time in state",
  agent: "Agent",
  live: "live",
  offline: "disconnected",
  lang_switch: "한국어",
  e_bad_login: "Wrong agent id or password.",
  e_login_blocked: "Too many failed logins: wait a few minutes, then try again.",
  token_refused: "Token refused (a supervisor or reporting token is needed).",
  e_already_logged_in: "This agent is already logged in in another browser.",
  e_session_expired: "Your login has expired. Log in again.",
  e_media_failed: "The audio connection to this browser failed. Log in again.",
  e_engine_unreachable: "The connection to the engine was lost. Log in again in a moment.",
  e_media_not_ready: "The audio connection is not up yet: is the microphone allowed?",
};

let current: Dict = (localStorage.getItem("dasan-lang") || navigator.language || "ko").startsWith("en") ? en : ko;

export function t(key: string): string {
  return current[key] ?? key;
}

export function applyLanguage(): void {
  document.documentElement.lang = current === en ? "en" : "ko";
  document.querySelectorAll<HTMLElement>("[data-t]").forEach((el) => {
    el.textContent = t(el.dataset.t || "");
  });
  document.querySelectorAll<HTMLElement>("[data-t-placeholder]").forEach((el) => {
    (el as HTMLInputElement).placeholder = t(el.dataset.tPlaceholder || "");
  });
}

export function toggleLanguage(): void {
  current = current === en ? ko : en;
  localStorage.setItem("dasan-lang", current === en ? "en" : "ko");
  applyLanguage();
}

export function seconds(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}
