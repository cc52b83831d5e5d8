// Server-Sent Events read with fetch(), so that every request can carry the
// Authorization header (EventSource cannot send headers). The text/event-stream format
// is parsed as the HTML standard describes it; a dropped stream is reopened with
// Last-Event-ID, and the server answers it with the current snapshot first.

const LINE_END = /\r\n|\r|\n/;

/** The events in a response body: `{type, data, id}`, until the server closes it. */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let type = '';
  let data = [];
  let lastId = null; // the "last event ID buffer": it carries over to later events
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (;;) {
        const end = LINE_END.exec(buffer);
        if (end === null) break;
        // A lone "\r" at the end of what arrived may be the first half of "\r\n".
        if (end[0] === '\r' && end.index === buffer.length - 1) break;
        const line = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        if (line === '') {
          if (data.length) yield { type: type || 'message', data: data.join('\n'), id: lastId };
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // a comment: the server's keep-alive ping
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') type = text;
        else if (field === 'data') data.push(text);
        else if (field === 'id' && !text.includes('\0')) lastId = text;
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // the consumer stopped early: close the connection
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15000;

/**
 * Follow the event stream at `url` until `onEvent` returns false, `signal` aborts, or
 * the server refuses the request (a 4xx: `onRefused(response)` is called, no retry).
 * A stream that drops or ends early is reopened with `Last-Event-ID`, backing off.
 *
 * @param {string} url
 * @param {{headers: () => object, onEvent: (event) => boolean|void,
 *          onRefused: (response: Response) => Promise<void>|void, signal: AbortSignal}} options
 */
export async function follow(url, { headers, onEvent, onRefused, signal }) {
  let lastEventId = null;
  let delay = FIRST_RETRY_MS;
  while (!signal.aborted) {
    try {
      const sent = { Accept: 'text/event-stream', ...headers() };
      if (lastEventId !== null) sent['Last-Event-ID'] = lastEventId;
      const response = await fetch(url, { headers: sent, signal, cache: 'no-store' });
      if (response.status >= 400 && response.status < 500 && response.status !== 429) {
        await onRefused(response);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      for await (const event of readEvents(response.body)) {
        if (event.id !== null) lastEventId = event.id;
        delay = FIRST_RETRY_MS;
        if (onEvent(event) === false) return;
      }
    } catch {
      if (signal.aborted) return;
      // A network error or a dropped stream: reconnect below.
    }
    await pause(delay, signal);
    delay = Math.min(delay * 2, MAX_RETRY_MS);
  }
}
