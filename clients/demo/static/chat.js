// The chat demo's page: clients/js against the gateway, the chat backend
// (clients/demo/chat_backend.py) behind it. Message types: 1 join a room,
// 2 say (QoS 2), 3 receipt (pushed to the sender), 4 a chat line (pushed to
// the room).
import { Rainbow } from '/js/index.js';

const JOIN = 1, SAY = 2, RECEIPT = 3, CHAT = 4;
const $ = (s) => document.querySelector(s);
const device = localStorage.getItem('rbDevice') || 'web-' + crypto.randomUUID();
localStorage.setItem('rbDevice', device);

let rb = null, room = null;

function status(state, text) {
  const s = $('#status');
  s.dataset.state = state;
  s.textContent = text;
}

function line(cid) {
  let li = document.querySelector(`#messages li[data-cid="${CSS.escape(cid)}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.cid = cid;
    li.innerHTML = '<span class="from"></span><span class="text"></span><span class="state"></span>';
    $('#messages').append(li);
  }
  return li;
}

function show(m, state) {
  const li = line(m.cid);
  li.querySelector('.from').textContent = m.from;
  li.querySelector('.text').textContent = m.text;
  if (m.id) li.dataset.id = m.id;
  if (state) setState(m.cid, state);
}

function setState(cid, state) {
  const li = line(cid);
  // never go back: delivered > sent > sending
  const rank = (s) => (s.startsWith('delivered') ? 3 : s === 'sent' ? 2 : s === 'received' ? 2 : 1);
  if (li.dataset.state && !li.dataset.state.startsWith('failed') &&
      rank(li.dataset.state) > rank(state)) return;
  li.dataset.state = state;
  li.querySelector('.state').textContent = state;
}

$('#join').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#name').value.trim();
  room = $('#room').value.trim();
  const first = await (await fetch('/token?name=' + encodeURIComponent(name))).json();
  rb = new Rainbow(first.ws, {
    device,
    json: true,
    // a fresh token for every connection attempt (tokens expire)
    token: () => fetch('/token?name=' + encodeURIComponent(name)).then((r) => r.json()).then((j) => j.token),
  });
  rb.on('open', () => status('open', 'connected'));
  rb.on('close', (c) => status(c.reconnecting ? 'reconnecting' : 'closed',
                               c.reconnecting ? 'reconnecting…' : 'closed'));
  rb.on('message', (type, data) => {
    if (type === CHAT) show(data, data.from === name ? null : 'received');
    else if (type === RECEIPT)
      setState(data.cid, `delivered to ${data.delivered}` + (data.queued ? `, ${data.queued} queued` : ''));
  });
  status('connecting', 'connecting…');
  const joined = await rb.send(JOIN, { room }, { qos: 1 });
  for (const m of joined.history) show(m, m.from === name ? 'sent' : 'received');
  $('#join').hidden = true;
  $('main').hidden = false;
  $('#title').textContent = `#${room} as ${name}`;
  $('#text').focus();
});

$('#say').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('#text').value;
  $('#text').value = '';
  const cid = crypto.randomUUID();
  show({ cid, from: $('#name').value.trim(), text }, 'sending');
  // QoS 2: exactly once toward the backend, even across a gateway restart
  rb.send(SAY, { room, text, cid }, { qos: 2, timeout: 60000 }).then(
    (r) => { line(cid).dataset.id = r.id; setState(cid, 'sent'); },
    (err) => setState(cid, `failed: ${err.message}`));
});
