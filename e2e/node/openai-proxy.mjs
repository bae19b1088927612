// Drives `caracal proxy` with the official OpenAI SDK.
// Usage: node openai-proxy.mjs SCENARIO
// Environment: CARACAL_BASE_URL (http://HOST/openai/v1), CARACAL_KEY (crk_…),
// FAKE_HEADERS (optional JSON object of extra request headers).
// Prints one JSON object: what the SDK returned, or the error it raised.
import OpenAI from 'openai';

const scenario = process.argv[2];
const client = new OpenAI({
  baseURL: process.env.CARACAL_BASE_URL,
  apiKey: process.env.CARACAL_KEY,
  maxRetries: 0,
  defaultHeaders: JSON.parse(process.env.FAKE_HEADERS || '{}'),
});
// The concurrent scenario's body must stay byte-for-byte what e2e/proxy_test.go
// prices: {"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"stream":true,"max_tokens":1000}
const messages = [{ role: 'user', content: 'Say hello.' }];
const out = { scenario };

function describe(e) {
  return { name: e.constructor.name, status: e.status ?? null, message: e.message, type: e.type ?? null, code: e.code ?? null };
}

async function streamChat(model, extra = {}) {
  const stream = await client.chat.completions.create({ model, messages, stream: true, ...extra });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  return { text, usage, chunks };
}

try {
  switch (scenario) {
    case 'chat': {
      const { data, response } = await client.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 50 }).withResponse();
      out.text = data.choices[0].message.content;
      out.usage = data.usage;
      out.headers = Object.fromEntries(response.headers.entries());
      break;
    }
    case 'chat-stream':
      Object.assign(out, await streamChat('gpt-4o-mini'));
      break;
    case 'chat-stream-usage':
      Object.assign(out, await streamChat('gpt-4o', { stream_options: { include_usage: true } }));
      break;
    case 'responses': {
      const r = await client.responses.create({ model: 'o3', input: 'Say hello.', max_output_tokens: 200 });
      out.text = r.output_text;
      out.usage = r.usage;
      break;
    }
    case 'responses-stream': {
      const stream = await client.responses.create({ model: 'o3', input: 'Say hello.', max_output_tokens: 200, stream: true });
      let text = '';
      for await (const ev of stream) {
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        if (ev.type === 'response.completed') out.usage = ev.response.usage;
      }
      out.text = text;
      break;
    }
    case 'embeddings': {
      const r = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha', 'beta'] });
      out.count = r.data.length;
      out.usage = r.usage;
      break;
    }
    case 'disconnect': {
      // Read the first content chunk, then leave: breaking out of the loop
      // aborts the HTTP request.
      const stream = await client.chat.completions.create({ model: 'gpt-4o', messages, stream: true });
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) {
          out.first = chunk.choices[0].delta.content;
          break;
        }
      }
      break;
    }
    case 'concurrent': {
      const n = Number(process.env.CONCURRENCY || 100);
      const results = await Promise.all(Array.from({ length: n }, async () => {
        try {
          const r = await streamChat('gpt-4o', { max_tokens: 1000 });
          return r.text.length > 0 ? 'ok' : 'empty';
        } catch (e) {
          return String(e.status ?? e.constructor.name);
        }
      }));
      out.results = {};
      for (const r of results) out.results[r] = (out.results[r] ?? 0) + 1;
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
} catch (e) {
  out.error = describe(e);
}
console.log(JSON.stringify(out));
