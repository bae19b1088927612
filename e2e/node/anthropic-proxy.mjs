// Drives `caracal proxy` with the official Anthropic SDK.
// Usage: node anthropic-proxy.mjs SCENARIO
// Environment: CARACAL_BASE_URL (http://HOST/anthropic), CARACAL_KEY (crk_…),
// FAKE_HEADERS (optional JSON object of extra request headers).
// Prints one JSON object: what the SDK returned, or the error it raised.
import Anthropic from '@anthropic-ai/sdk';

const scenario = process.argv[2];
const client = new Anthropic({
  baseURL: process.env.CARACAL_BASE_URL,
  apiKey: process.env.CARACAL_KEY,
  maxRetries: 0,
  defaultHeaders: JSON.parse(process.env.FAKE_HEADERS || '{}'),
});
const params = { model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: 'Say hello.' }] };
const out = { scenario };

try {
  switch (scenario) {
    case 'messages': {
      const { data, response } = await client.messages.create(params).withResponse();
      out.text = data.content.map((b) => b.text ?? '').join('');
      out.usage = data.usage;
      out.headers = Object.fromEntries(response.headers.entries());
      break;
    }
    case 'messages-stream': {
      const stream = client.messages.stream(params);
      let text = '';
      stream.on('text', (t) => { text += t; });
      const final = await stream.finalMessage();
      out.text = text;
      out.usage = final.usage;
      break;
    }
    case 'disconnect': {
      const stream = await client.messages.create({ ...params, stream: true });
      for await (const ev of stream) {
        if (ev.type === 'content_block_delta') {
          out.first = ev.delta.text;
          break;
        }
      }
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
} catch (e) {
  out.error = { name: e.constructor.name, status: e.status ?? null, message: e.message, type: e.type ?? null, apiMessage: e.apiMessage ?? null };
}
console.log(JSON.stringify(out));
