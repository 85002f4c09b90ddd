/**
 * The demo page (served at /demo/ by the dev server). Plain HTML: demo-app.ts
 * fills it in. Element ids are what the script and the browser tests use.
 */
export const DEMO_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>session-authority demo</title>
<link rel="icon" href="data:,">
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2430; background: #f4f6f9; }
  body { margin: 0; }
  main { max-width: 52rem; margin: 0 auto; padding: 1.5rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  p.lead { margin: 0 0 1rem; color: #4a5568; }
  section, .banner { background: #fff; border: 1px solid #d8dee8; border-radius: 8px; padding: 1rem; margin: 1rem 0; }
  .banner { font-weight: 600; }
  #notice { background: #fff1f0; border-color: #e5484d; color: #8c1d21; }
  #notice.own { background: #f0f7ff; border-color: #5b8def; color: #1d3f7a; }
  #expiry-warning { background: #fff8e6; border-color: #e5a000; color: #6b4a00; }
  label { display: block; margin: .5rem 0; }
  input[type=text] { font: inherit; padding: .35rem .5rem; width: 16rem; max-width: 100%; }
  button { font: inherit; padding: .4rem .8rem; margin: .25rem .25rem .25rem 0; border: 1px solid #9aa5b8; border-radius: 6px; background: #fff; cursor: pointer; }
  h2 button { font-size: .85rem; font-weight: normal; padding: .2rem .6rem; }
  button.primary { background: #2f5fd0; border-color: #2f5fd0; color: #fff; }
  button.danger { border-color: #c53030; color: #c53030; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0 0 .75rem; }
  dt { color: #4a5568; } dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
  ul#devices { list-style: none; padding: 0; margin: 0; }
  ul#devices li { display: flex; justify-content: space-between; align-items: center; gap: 1rem; padding: .5rem 0; border-top: 1px solid #e6eaf0; }
  ul#devices li:first-child { border-top: 0; }
  .tag { font-size: .8rem; background: #e6f4ea; color: #1e6b35; border-radius: 4px; padding: .05rem .4rem; margin-left: .4rem; }
  .muted { color: #6b7689; font-size: .85rem; }
  pre { background: #f7f8fa; border: 1px solid #e6eaf0; border-radius: 6px; padding: .5rem; overflow: auto; margin: .5rem 0 0; min-height: 1.2rem; }
  ol#log { font-size: .85rem; color: #4a5568; padding-left: 1.5rem; max-height: 14rem; overflow: auto; }
</style>
</head>
<body>
<main>
  <h1>session-authority demo</h1>
  <p class="lead">Sign in as the same demo user in two windows that do not share cookies (a normal and a private window,
  or two browsers): each is a device. End one from the other and watch it being signed out at once.</p>

  <div id="notice" class="banner" role="alert" hidden></div>
  <div id="expiry-warning" class="banner" role="status" hidden></div>

  <section id="signed-out" hidden>
    <form id="sign-in-form" autocomplete="off">
      <label>Demo user <input type="text" id="username" required maxlength="32" pattern="[A-Za-z0-9][A-Za-z0-9._\\-]{0,31}" placeholder="alice"></label>
      <label>Device name <input type="text" id="device-name" maxlength="64" placeholder="(from your browser)"></label>
      <label><input type="checkbox" id="short-session" checked> Short session: it ends after 2 minutes, with a warning 1 minute before</label>
      <button type="submit" id="sign-in" class="primary">Sign in</button>
      <span id="sign-in-error" class="muted" role="status"></span>
    </form>
  </section>

  <section id="signed-in" hidden>
    <dl id="session">
      <dt>User</dt><dd id="user-id"></dd>
      <dt>Session</dt><dd id="session-id"></dd>
      <dt>Access token expires in</dt><dd id="token-expires"></dd>
      <dt>Session ends in</dt><dd id="session-ends"></dd>
      <dt>Refreshes</dt><dd id="refresh-count">0</dd>
    </dl>
    <button id="call-api" class="primary">Call the API</button>
    <button id="refresh-now">Refresh now</button>
    <button id="logout">Log out</button>
    <button id="logout-all" class="danger">Log out everywhere</button>
    <pre id="api-result" aria-live="polite"></pre>

    <h2>Devices <button id="reload-devices">Reload</button> <button id="end-others" class="danger">End all other devices</button></h2>
    <ul id="devices"></ul>
  </section>

  <h2>Events</h2>
  <ol id="log" reversed></ol>
</main>
<script type="module" src="app.js"></script>
</body>
</html>
`;
