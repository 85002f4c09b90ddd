// The demo page's script: the client SDK in browser mode, on plain DOM. Bundled
// in memory by demo-assets.ts when the dev server starts. Everything shown comes
// from the SDK's events and calls; text is set with textContent only.
import { createSessionClient, SessionClientError, type DeviceSession, type LoggedOutEvent } from "../client/index.js";

const SHORT_SESSION_SECONDS = 120;

const client = createSessionClient({ baseUrl: location.origin, expiringWarningMs: 60_000 });
// The page's client, to play with in the browser console (and for the browser tests).
Object.assign(globalThis, { demo: { client } });

const byId = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const signedOutView = byId("signed-out");
const signedInView = byId("signed-in");
const notice = byId("notice");
const warning = byId("expiry-warning");
let refreshes = 0;
let warnUntil: number | undefined;

client.on("refreshed", ({ source }) => {
  if (source === "refresh") refreshes++;
  log(source === "sign-in" ? "signed in" : source === "other-tab" ? "new access token from another tab" : "access token refreshed");
  showSignedIn();
});
client.on("expiring", (e) => {
  warnUntil = e.endsAt;
  log(`expiring: the session ends in ${seconds(e.inMs)} (${e.cause})`);
  tick();
});
client.on("logged-out", (e) => signedOut(e));
client.on("device-ended", (e) => {
  log(`another device was signed out: ${e.message}`);
  void loadDevices();
});
client.on("error", (e) => log(`${e.during} failed: ${e.error.message}${e.retryInMs === undefined ? "" : `; retrying in ${seconds(e.retryInMs)}`}`));

function signedOut(e: LoggedOutEvent): void {
  log(`signed out (${e.reason}${e.revocationReason ? `, ${e.revocationReason}` : ""}): ${e.message}`);
  // Ending our own session is no surprise; anything else is shown as a forced sign-out.
  notice.textContent = e.message;
  notice.className = e.reason === "logout" ? "banner own" : "banner forced";
  notice.dataset.reason = e.reason;
  notice.hidden = false;
  warnUntil = undefined;
  warning.hidden = true;
  showSignedOut();
}

function showSignedIn(): void {
  const s = client.session;
  if (!s) return;
  signedOutView.hidden = true;
  signedInView.hidden = false;
  byId("user-id").textContent = s.userId;
  byId("session-id").textContent = s.sessionId;
  byId("refresh-count").textContent = String(refreshes);
  tick();
}

function showSignedOut(): void {
  signedInView.hidden = true;
  signedOutView.hidden = false;
  byId("devices").replaceChildren();
  byId("api-result").textContent = "";
}

/** Countdowns, once a second. */
function tick(): void {
  const s = client.session;
  if (!s) return;
  const now = Date.now();
  byId("token-expires").textContent = seconds(s.accessTokenExpiresAt - now);
  byId("session-ends").textContent = seconds(Math.min(s.refreshExpiresAt, s.sessionExpiresAt) - now);
  if (warnUntil !== undefined) {
    warning.textContent = `Your session ends in ${seconds(warnUntil - now)}. Sign in again afterwards to continue.`;
    warning.hidden = false;
  }
}
setInterval(tick, 1000);

async function loadDevices(): Promise<void> {
  if (!client.session) return;
  let devices: DeviceSession[];
  try {
    devices = await client.listDevices();
  } catch (error) {
    return log(`listing devices failed: ${messageOf(error)}`);
  }
  const list = byId("devices");
  list.replaceChildren(
    ...devices.map((d) => {
      const item = document.createElement("li");
      item.dataset.sessionId = d.sessionId;
      const text = document.createElement("div");
      const name = document.createElement("strong");
      name.textContent = d.deviceName || "Unnamed device";
      text.append(name);
      if (d.current) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "this device";
        text.append(tag);
      }
      const details = document.createElement("div");
      details.className = "muted";
      details.textContent = `${d.ipAddress || "unknown address"} · signed in ${time(d.createdAt)} · last active ${time(d.lastActivityAt)}`;
      text.append(details);
      item.append(text);
      if (!d.current) {
        const end = document.createElement("button");
        end.className = "danger end-device";
        end.textContent = "End";
        end.addEventListener("click", () => run(`end ${d.deviceName}`, async () => {
          const ended = await client.endDevice(d.sessionId);
          log(`ended ${ended} session`);
          await loadDevices();
        }));
        item.append(end);
      }
      return item;
    }),
  );
}

byId<HTMLFormElement>("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const error = byId("sign-in-error");
  error.textContent = "";
  void run("sign in", async () => {
    const short = byId<HTMLInputElement>("short-session").checked;
    const deviceName = byId<HTMLInputElement>("device-name").value.trim();
    const response = await fetch("v1/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        username: byId<HTMLInputElement>("username").value.trim(),
        ...(short ? { maxLifetimeSeconds: SHORT_SESSION_SECONDS } : {}),
        ...(deviceName ? { deviceName } : {}),
      }),
    });
    const answer = (await response.json()) as { handoffCode?: string; message?: string };
    if (!response.ok || !answer.handoffCode) {
      error.textContent = answer.message ?? `HTTP ${response.status}`;
      return;
    }
    notice.hidden = true;
    // The demo login played the login service; from here on it is the SDK and /auth/v1, as in a real app.
    await client.signIn(answer.handoffCode);
    await loadDevices();
  });
});

byId("call-api").addEventListener("click", () => run("call the API", async () => {
  const before = refreshes;
  const response = await client.fetch("v1/me");
  const body = await response.text();
  byId("api-result").textContent = `GET /demo/v1/me → ${response.status}${refreshes > before ? " (the token was refreshed on the way)" : ""}\n${pretty(body)}`;
}));
byId("refresh-now").addEventListener("click", () => run("refresh", () => client.refresh()));
byId("reload-devices").addEventListener("click", () => run("reload devices", loadDevices));
byId("end-others").addEventListener("click", () => run("end all other devices", async () => {
  log(`ended ${await client.endOtherDevices()} other session(s)`);
  await loadDevices();
}));
byId("logout").addEventListener("click", () => run("log out", () => client.logout()));
byId("logout-all").addEventListener("click", () => run("log out everywhere", async () => {
  await client.logoutEverywhere();
}));

/** Runs a button's action; a failure goes to the event log. */
async function run(what: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    log(`${what} failed: ${messageOf(error)}`);
  }
}

function log(text: string): void {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  byId("log").prepend(item);
}

function messageOf(error: unknown): string {
  return error instanceof SessionClientError ? `${error.message} (${error.code})` : error instanceof Error ? error.message : String(error);
}

function seconds(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function time(ms: number): string {
  return ms ? new Date(ms).toLocaleTimeString() : "?";
}

function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// A reload (or a second tab) picks up the cookie's session, if there is one.
void (async () => {
  try {
    if (await client.resume()) await loadDevices();
    else showSignedOut();
  } catch (error) {
    log(`resuming failed: ${messageOf(error)}`);
    showSignedOut();
  }
})();
