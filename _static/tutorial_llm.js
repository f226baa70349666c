/* The real model in the reader's browser: SmolLM2-135M-Instruct (the book's offline GGUF,
 * Q4_1) run by wllama, llama.cpp compiled to WebAssembly, on one thread.
 *
 * A small API that the live controls use and that you can call from the browser console:
 *
 *   await tutorialLLM.ready()                  // loads the model once (98 MB); resolves
 *   const r = await tutorialLLM.generate(prompt, {
 *       maxTokens: 32, temperature: 0.8,       // temperature 0 = greedy
 *       topK: 50, topP: 0.9, minP: 0, seed: 0,
 *       chat: false, system: undefined,        // chat: true applies the model's template
 *       jsonSchema: undefined,                 // an object: the output must match it
 *       cachePrompt: false,                    // true: reuse the last prompt's KV cache
 *       onToken: (token, text) => {} })        // called as each token arrives
 *   // r.text, r.tokens: [{id, text, top: [{id, text, p}, ...5]}], r.prompt (as sent),
 *   // r.tokensPerSecond, r.stopped
 *   tutorialLLM.stop()                         // interrupts a running generate()
 *   tutorialLLM.renderChat(system, user)       // the chat prompt, special tokens included
 *
 * The top-5 probabilities are the model's own (temperature 1, no filters), before the
 * sampling settings; {postSampling: true} gives them after the settings instead.
 * Nothing is downloaded until ready() is called (the Load button). ready({file}) loads a
 * .gguf File instead of downloading: pages opened from file:// cannot fetch the model, so
 * there the control offers a file picker (or serve the book: make serve).
 */
(function () {
  "use strict";

  const CONFIG = window.TUTORIAL_LLM_CONFIG || {};
  const SCRIPT = document.currentScript;
  const STATIC = SCRIPT ? new URL(".", SCRIPT.src).href : new URL("_static/", location.href).href;
  const N_CTX = 2048; // tokens of context the page allocates (the model was trained on 8,192)
  const MAX_NEW_TOKENS = 512;
  const N_TOP = 5;

  class LLMError extends Error {
    constructor(message, kind) {
      super(message);
      this.name = "LLMError";
      this.kind = kind; // "input", "busy", "missing", "file-protocol", "unsupported", "runtime"
    }
  }

  const state = {
    wllama: null,
    loading: null,
    busy: false,
    controller: null,
    info: null,
    template: null,
    loadMs: null,
    modelBytes: null,
  };

  // ----------------------------------------------------------------------------------
  // Loading

  // Minimal modules (wllama's own probes): WebAssembly.validate says whether the browser has
  // SIMD (a v128 instruction) and exception handling (try/catch), both of which the
  // llama.cpp build needs.
  const SIMD_PROBE = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0,
    253, 15, 253, 98, 11,
  ]);
  const EXCEPTIONS_PROBE = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 8, 1, 6, 0, 6, 64, 25, 11,
    11,
  ]);
  const USE_A_CURRENT_BROWSER = "use a current Chrome, Edge (133 or later) or Firefox (134 or later).";

  /** Why this browser cannot run the model (a sentence), or null if it can. */
  function browserProblem() {
    if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
      return "This browser has no WebAssembly, which the model needs: " + USE_A_CURRENT_BROWSER;
    }
    if (!WebAssembly.validate(SIMD_PROBE)) {
      return (
        "This browser lacks WebAssembly SIMD, which llama.cpp's WebAssembly build needs: " +
        USE_A_CURRENT_BROWSER
      );
    }
    if (!WebAssembly.validate(EXCEPTIONS_PROBE)) {
      return (
        "This browser lacks WebAssembly exception handling, which llama.cpp's WebAssembly " +
        "build needs: " + USE_A_CURRENT_BROWSER
      );
    }
    try {
      // The kind of memory wllama's build allocates: 64-bit addresses, shared.
      new WebAssembly.Memory({ initial: 1n, maximum: 1n, address: "i64", shared: true });
    } catch (e) {
      return (
        "This browser lacks 64-bit WebAssembly memory (Memory64), which this build of " +
        "llama.cpp needs: " + USE_A_CURRENT_BROWSER + " (wllama's slower build for browsers " +
        "without it, meant for Safari, is not part of this book.)"
      );
    }
    // wllama's main build runs without JSPI (JavaScript Promise Integration) in Chromium
    // and Firefox, but not in WebKit (Safari, and every iOS browser), for which wllama
    // switches to its compatibility build (its README's table), which the book does not ship.
    const webkit = /AppleWebKit/.test(navigator.userAgent) && !/Chrome\//.test(navigator.userAgent);
    if (webkit && typeof WebAssembly.Suspending !== "function") {
      return (
        "This browser (Safari or another WebKit browser) lacks WebAssembly JSPI, without " +
        "which llama.cpp's WebAssembly build does not run in WebKit (wllama's slower build " +
        "for Safari is not part of this book): " + USE_A_CURRENT_BROWSER
      );
    }
    if (typeof DecompressionStream !== "function") {
      return "This browser lacks DecompressionStream, which the page needs: " + USE_A_CURRENT_BROWSER;
    }
    return null;
  }

  function checkBrowser() {
    const problem = browserProblem();
    if (problem) throw new LLMError(problem, "unsupported");
  }

  function loadScript(src, what) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = () => resolve();
      el.onerror = () =>
        reject(
          new LLMError(
            `The ${what} is missing from this build of the book (${src}). Rebuild the book ` +
              "after `npm ci` (make install does it).",
            "missing",
          ),
        );
      document.head.appendChild(el);
    });
  }

  const FILE_PAGE = location.protocol === "file:";

  /** Where wllama's worker finds the WebAssembly binary (inflated from wllama-wasm.js). */
  async function wasmUrl() {
    const bytes = Uint8Array.from(atob(window.TutorialWllamaWasm), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const wasm = new Blob([await new Response(stream).arrayBuffer()], { type: "application/wasm" });
    if (!FILE_PAGE) return URL.createObjectURL(wasm);
    // A file:// page and its worker have distinct opaque origins, and the worker may not
    // fetch the page's blob: URL ("URL scheme "blob" is not supported"): a data: URL it can.
    return await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(wasm);
    });
  }

  /** Run fn() with wllama's worker started as a classic script on file:// pages.
   *
   * wllama starts its worker with new Worker(blobUrl, {type: "module"}); Chromium refuses
   * a module worker on a file:// page ("Refused to cross-origin redirects of the top-level
   * worker script"). wllama's worker code is a plain script (no import or export), so
   * there it starts as a classic worker, which file:// pages may start from a blob: URL.
   * Only during loadModel (when wllama creates its worker) and only on file:// pages. */
  async function withClassicWorker(fn) {
    if (!FILE_PAGE) return await fn();
    const Native = window.Worker;
    window.Worker = class extends Native {
      constructor(url, options) {
        const classic = Object.assign({}, options);
        if (String(url).startsWith("blob:") && classic.type === "module") delete classic.type;
        super(url, classic);
      }
    };
    try {
      return await fn();
    } finally {
      window.Worker = Native;
    }
  }

  async function fetchModel(onProgress) {
    if (FILE_PAGE) {
      throw new LLMError(
        "This page was opened from a file (file://), and browsers do not let such a page " +
          "download the model: pick the model file (.gguf) below, or serve the book (make " +
          "serve, then open http://127.0.0.1:8000).",
        "file-protocol",
      );
    }
    const url = new URL(CONFIG.model || "models/SmolLM2-135M-Instruct.Q4_1.gguf", STATIC).href;
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      throw new LLMError(`Could not download the model (${url}): ${e.message}`, "missing");
    }
    if (!response.ok) {
      throw new LLMError(
        `The model file is missing from this build of the book (${url}: HTTP ` +
          `${response.status}). Run python -m tutorial_lib fetch ${CONFIG.asset || "--all"} ` +
          "and rebuild the book.",
        "missing",
      );
    }
    const total = Number(response.headers.get("Content-Length")) || CONFIG.modelBytes || 0;
    const reader = response.body.getReader();
    const parts = [];
    let loaded = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      loaded += value.length;
      if (onProgress) onProgress(loaded, total);
    }
    return new Blob(parts);
  }

  /** Load the model once; later calls return the same promise. */
  function ready(options = {}) {
    if (state.wllama) return Promise.resolve(summary());
    if (state.loading) return state.loading;
    state.loading = (async () => {
      const t0 = performance.now();
      checkBrowser();
      if (!window.TutorialWllama) await loadScript(STATIC + "wllama/wllama.js", "WebAssembly runtime");
      if (!window.TutorialWllamaWasm) {
        await loadScript(STATIC + "wllama/wllama-wasm.js", "WebAssembly binary");
      }
      const blob = options.file || (await fetchModel(options.onProgress));
      if (options.file && options.onProgress) options.onProgress(blob.size, blob.size);
      const quiet = { debug() {}, log() {}, warn() {}, error: console.error.bind(console) };
      const w = new window.TutorialWllama.Wllama(
        { default: await wasmUrl() },
        { suppressNativeLog: true, logger: quiet },
      );
      // Never wllama's compatibility build from its CDN (its default for a browser without
      // JSPI or Memory64): nothing leaves the book's origin. Without JSPI (Firefox, older
      // Chrome) wllama runs this build and copies the model into WebAssembly memory.
      w.setCompat(null);
      try {
        await withClassicWorker(() => w.loadModel([blob], {
          n_threads: options.threads || 1,
          n_gpu_layers: 0, // the CPU kernels, the same on every machine
          n_ctx: N_CTX,
          n_parallel: 1,
          // Keys and values in fp32 (llama.cpp's default is fp16): closer to the book's
          // fp32 engine, and only 47 MB for 2,048 tokens of this small model.
          cache_type_k: "f32",
          cache_type_v: "f32",
        }));
      } catch (e) {
        throw new LLMError(`The model could not be loaded: ${e.message || e}`, "runtime");
      }
      state.wllama = w;
      state.info = w.getLoadedContextInfo();
      state.template = w.getChatTemplate();
      state.loadMs = performance.now() - t0;
      state.modelBytes = blob.size;
      return summary();
    })();
    state.loading.catch(() => {
      state.loading = null; // let the reader try again (e.g. pick a file)
    });
    return state.loading;
  }

  function summary() {
    return {
      loadMs: state.loadMs,
      modelBytes: state.modelBytes,
      nCtx: state.info && state.info.n_ctx,
      threads: state.wllama ? state.wllama.getNumThreads() : null,
      wllama: CONFIG.wllama,
    };
  }

  // ----------------------------------------------------------------------------------
  // Chat template and JSON schema

  /** The chat prompt for (system, user), with the model's ChatML template. */
  function renderChat(system, user) {
    const template = state.template || "";
    if (state.wllama && !template.includes("<|im_start|>")) {
      throw new LLMError("This model's chat template is not ChatML; chat mode needs it.", "runtime");
    }
    // SmolLM2's template writes this system message when the chat has none.
    const fallback = /<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>/.exec(template);
    const defaultSystem = fallback
      ? fallback[1]
      : "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    const sys = system && system.trim() ? system : defaultSystem;
    return (
      `<|im_start|>system\n${sys}<|im_end|>\n` +
      `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`
    );
  }

  const SCHEMA_TYPES = ["object", "string", "integer", "number", "boolean", "array", "null"];
  const SCHEMA_KEYS = [
    "type", "properties", "required", "enum", "const", "items", "minItems", "maxItems",
    "minLength", "maxLength", "minimum", "maximum", "additionalProperties", "title",
    "description", "anyOf", "oneOf", "$schema",
  ];

  /** Parse (if a string) and check a JSON schema against the subset the page supports. */
  function checkSchema(schema) {
    if (typeof schema === "string") {
      try {
        schema = JSON.parse(schema);
      } catch (e) {
        throw new LLMError(`The JSON schema is not valid JSON: ${e.message}`, "input");
      }
    }
    const walk = (node, path) => {
      if (node === true || node === false) return;
      if (typeof node !== "object" || node === null || Array.isArray(node)) {
        throw new LLMError(`Invalid JSON schema at ${path}: expected an object.`, "input");
      }
      for (const key of Object.keys(node)) {
        if (!SCHEMA_KEYS.includes(key)) {
          throw new LLMError(
            `Invalid JSON schema at ${path}: "${key}" is not supported here (use ` +
              `${SCHEMA_KEYS.slice(0, -1).join(", ")}).`,
            "input",
          );
        }
      }
      const types = node.type === undefined ? [] : [].concat(node.type);
      for (const t of types) {
        if (!SCHEMA_TYPES.includes(t)) {
          throw new LLMError(
            `Invalid JSON schema at ${path}: type "${t}" is not one of ${SCHEMA_TYPES.join(", ")}.`,
            "input",
          );
        }
      }
      if (node.enum !== undefined && (!Array.isArray(node.enum) || node.enum.length === 0)) {
        throw new LLMError(`Invalid JSON schema at ${path}: "enum" must be a non-empty list.`, "input");
      }
      if (node.required !== undefined) {
        const props = node.properties || {};
        if (!Array.isArray(node.required) || node.required.some((k) => !(k in props))) {
          throw new LLMError(
            `Invalid JSON schema at ${path}: "required" must list keys of "properties".`,
            "input",
          );
        }
      }
      for (const [k, v] of Object.entries(node.properties || {})) walk(v, `${path}.properties.${k}`);
      if (node.items !== undefined) walk(node.items, `${path}.items`);
      if (typeof node.additionalProperties === "object") {
        walk(node.additionalProperties, `${path}.additionalProperties`);
      }
      for (const key of ["anyOf", "oneOf"]) {
        if (node[key] !== undefined) {
          if (!Array.isArray(node[key])) {
            throw new LLMError(`Invalid JSON schema at ${path}: "${key}" must be a list.`, "input");
          }
          node[key].forEach((s, i) => walk(s, `${path}.${key}[${i}]`));
        }
      }
    };
    walk(schema, "$");
    return schema;
  }

  // ----------------------------------------------------------------------------------
  // Generation

  function number(value, fallback, name, lo, hi, integer) {
    const v = value === undefined || value === null || value === "" ? fallback : Number(value);
    if (!Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
      const kind = integer ? "a whole number" : "a number";
      throw new LLMError(`${name} must be ${kind} from ${lo} to ${hi} (got ${value}).`, "input");
    }
    return v;
  }

  function tokenText(t) {
    // Special tokens (e.g. <|im_end|>, id 2) come back with no text; name them.
    if (t.token) return t.token;
    return state.info && state.info.list_tokens_eog.includes(t.id) ? "<end of turn>" : `<special ${t.id}>`;
  }

  /** Generate a continuation of prompt (or a chat reply); see the top of this file. */
  async function generate(prompt, options = {}) {
    if (state.busy) {
      throw new LLMError("A generation is already running: wait for it, or press Stop.", "busy");
    }
    if (typeof prompt !== "string" || !prompt.trim()) {
      throw new LLMError("The prompt is empty: type some text first.", "input");
    }
    const maxTokens = number(options.maxTokens, 32, "Max new tokens", 1, MAX_NEW_TOKENS, true);
    const temperature = number(options.temperature, 0, "Temperature", 0, 5, false);
    const topK = number(options.topK, 0, "Top-k", 0, 1000000, true);
    const topP = number(options.topP, 1, "Top-p", 0.001, 1, false);
    const minP = number(options.minP, 0, "Min-p", 0, 1, false);
    const seed = number(options.seed, 0, "Seed", 0, 2 ** 31 - 1, true);
    const schema = options.jsonSchema === undefined || options.jsonSchema === null || options.jsonSchema === ""
      ? undefined
      : checkSchema(options.jsonSchema);
    // Byte-level BPE gives at least one token per 4-5 characters of English; refuse early
    // what cannot fit, and let the runtime's own count decide the rest.
    if (prompt.length > 6 * N_CTX) {
      throw new LLMError(
        `The prompt is too long: ${prompt.length} characters, while the page's context ` +
          `holds ${N_CTX} tokens. Shorten it.`,
        "input",
      );
    }
    state.busy = true; // refuse a second call from here on (before the first await)
    try {
      await ready();
      const text = options.chat ? renderChat(options.system, prompt) : prompt;
      const controller = new AbortController();
      state.controller = controller;
      const tokens = [];
      let out = "";
      let usage = null;
      let timings = null;
      let finish = null;
      let stopped = false;
      const t0 = performance.now();
      let tFirst = null;
      const params = {
        prompt: text,
        max_tokens: maxTokens,
        temperature,
        top_k: topK,
        top_p: topP,
        min_p: minP,
        seed,
        // The book's order (tutorial_lib.generation.process_logits): temperature first.
        samplers: ["temperature", "top_k", "top_p", "min_p"],
        n_probs: N_TOP,
        post_sampling_probs: !!options.postSampling,
        // Off by default: a prompt then gives the same numbers on every run (reusing cached
        // keys and values computed in another batch shape can change the last digits).
        cache_prompt: !!options.cachePrompt,
        stream: true,
        abortSignal: controller.signal,
        onData: (chunk) => {
          if (chunk.usage) usage = chunk.usage;
          if (chunk.timings) timings = chunk.timings;
          const choice = chunk.choices && chunk.choices[0];
          if (!choice) return;
          if (choice.finish_reason) finish = choice.finish_reason;
          const content = (choice.logprobs && choice.logprobs.content) || [];
          for (const c of content) {
            if (tFirst === null) tFirst = performance.now();
            const top = (c.top_logprobs || c.top_probs || []).slice(0, N_TOP).map((t) => ({
              id: t.id,
              text: tokenText(t),
              p: t.prob !== undefined ? t.prob : Math.exp(t.logprob),
            }));
            const token = { id: c.id, text: tokenText(c), top };
            tokens.push(token);
            if (options.onToken) options.onToken(token, out + (c.token || ""));
          }
          out += choice.text || "";
        },
      };
      if (schema !== undefined) params.json_schema = schema;
      try {
        await state.wllama.createCompletion(params);
      } catch (e) {
        if (e && (e.name === "AbortError" || controller.signal.aborted)) {
          stopped = true;
        } else {
          const message = String((e && e.message) || e);
          if (/context|exceed|kv_cache/i.test(message) || (e && e.type === "kv_cache_full")) {
            throw new LLMError(
              `The prompt and the new tokens do not fit in the page's context of ${N_CTX} ` +
                `tokens: shorten the prompt or ask for fewer tokens. (${message})`,
              "input",
            );
          }
          throw new LLMError(`Generation failed: ${message}`, "runtime");
        }
      }
      const seconds = (performance.now() - (tFirst || t0)) / 1000;
      return {
        text: out,
        tokens,
        prompt: text,
        promptTokens: usage ? usage.prompt_tokens : null,
        finishReason: stopped ? "stopped" : finish,
        stopped,
        timings,
        tokensPerSecond:
          timings && timings.predicted_per_second
            ? timings.predicted_per_second
            : tokens.length > 1
              ? (tokens.length - 1) / seconds
              : null,
      };
    } finally {
      state.busy = false;
      state.controller = null;
    }
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  window.tutorialLLM = {
    ready,
    generate,
    stop,
    renderChat,
    checkSchema,
    LLMError,
    get loaded() {
      return !!state.wllama;
    },
    get busy() {
      return state.busy;
    },
    info: summary,
    isEnd: (id) => !!(state.info && state.info.list_tokens_eog.includes(id)),
    config: CONFIG,
  };

  // ----------------------------------------------------------------------------------
  // The controls: <div class="tutorial-llm" data-mode="decode|chat"></div>

  const CH13_SCHEMA = {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 24 },
      age: { type: "integer" },
      city: { type: "string", maxLength: 24 },
      mood: { enum: ["happy", "neutral", "unhappy"] },
    },
    required: ["name", "age", "city", "mood"],
  };
  const CH13_EXTRACTION =
    "Extract the person's name, age, city and mood from the text as a JSON object with " +
    "the keys name, age, city and mood.\nText: Maria Silva is a 34-year-old nurse who " +
    "lives in Lisbon. She was very happy with her new bike.";

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of [].concat(children)) if (c) node.appendChild(c);
    return node;
  }

  function field(label, input, hint) {
    const wrap = el("label", { class: "tllm-field" }, [el("span", { text: label }), input]);
    if (hint) wrap.title = hint;
    return wrap;
  }

  function numberInput(name, value, min, max, step) {
    return el("input", { type: "number", name, value: String(value), min: String(min), max: String(max), step: String(step) });
  }

  /** The built book's copy of the model, as a path on this computer (file:// pages). */
  function localModelPath() {
    const url = new URL(CONFIG.model || "models/SmolLM2-135M-Instruct.Q4_1.gguf", STATIC);
    return decodeURIComponent(url.pathname).replace(/^\/([A-Za-z]:\/)/, "$1");
  }

  function mb(bytes) {
    return `${(bytes / 1e6).toFixed(1)} MB`;
  }

  function showWhitespace(s) {
    return s.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5");
  }

  function build(root) {
    const mode = root.dataset.mode === "chat" ? "chat" : "decode";
    root.textContent = "";
    root.classList.add("tllm");

    // Load row
    const size = CONFIG.modelBytes ? mb(CONFIG.modelBytes) : "about 98 MB";
    const loadButton = el("button", { type: "button", class: "tllm-load", text: `Load the model (${size})` });
    const progress = el("progress", { class: "tllm-progress", max: "1", value: "0" });
    const status = el("div", { class: "tllm-status", role: "status", "aria-live": "polite" });
    const picker = el("input", { type: "file", accept: ".gguf", class: "tllm-file" });
    const pickRow = el("div", { class: "tllm-pick" }, [
      el("span", {
        text:
          "This page is a local file (file://), so it cannot download the model: serve the " +
          "book (make serve, then open http://127.0.0.1:8000), or pick the model file here. " +
          `The book's copy is ${localModelPath()}; another is in the asset cache (the folder ` +
          "that python -m tutorial_lib list prints), under smollm2-135m-instruct-gguf/. ",
      }),
      picker,
    ]);
    pickRow.hidden = !FILE_PAGE; // served pages download the model (the Load button)
    const message = el("div", { class: "tllm-message", role: "alert" });

    // Inputs
    const inputs = {};
    const settings = el("div", { class: "tllm-settings" });
    const add = (label, input, hint) => {
      inputs[input.name] = input;
      settings.appendChild(field(label, input, hint));
    };
    let promptBox, systemBox, jsonBox, schemaBox, rendered;
    const body = el("div", { class: "tllm-body" });
    if (mode === "decode") {
      promptBox = el("textarea", { name: "prompt", rows: "2", class: "tllm-prompt" });
      promptBox.value = root.dataset.prompt || "Once upon a time, there was a";
      body.appendChild(field("Prompt (continued as plain text)", promptBox));
      add("temperature", numberInput("temperature", 0.8, 0, 5, 0.1), "0 = greedy");
      add("top-k", numberInput("topK", 50, 0, 1000, 1), "0 = off");
      add("top-p", numberInput("topP", 0.9, 0.01, 1, 0.05), "1 = off");
      add("min-p", numberInput("minP", 0, 0, 1, 0.01), "0 = off");
      add("seed", numberInput("seed", 0, 0, 2147483647, 1));
      add("max new tokens", numberInput("maxTokens", 48, 1, MAX_NEW_TOKENS, 1));
    } else {
      systemBox = el("input", { type: "text", name: "system", class: "tllm-system" });
      systemBox.value = root.dataset.system || "You are a pirate. Answer in one sentence.";
      promptBox = el("textarea", { name: "prompt", rows: "2", class: "tllm-prompt" });
      promptBox.value = root.dataset.prompt || "What should I eat for breakfast?";
      body.appendChild(field("System prompt (empty: the template's default)", systemBox));
      body.appendChild(field("User message", promptBox));
      add("temperature", numberInput("temperature", 0.7, 0, 5, 0.1), "0 = greedy");
      add("top-p", numberInput("topP", 0.9, 0.01, 1, 0.05), "1 = off");
      add("seed", numberInput("seed", 0, 0, 2147483647, 1));
      add("max new tokens", numberInput("maxTokens", 64, 1, MAX_NEW_TOKENS, 1));
      jsonBox = el("input", { type: "checkbox", name: "json" });
      schemaBox = el("textarea", { name: "schema", rows: "6", class: "tllm-schema" });
      schemaBox.value = JSON.stringify(CH13_SCHEMA, null, 1);
      const example = el("button", { type: "button", text: "Use the chapter's extraction example" });
      example.addEventListener("click", () => {
        jsonBox.checked = true;
        promptBox.value = CH13_EXTRACTION;
        systemBox.value = "";
        schemaBox.value = JSON.stringify(CH13_SCHEMA, null, 1);
        schemaRow.hidden = false;
        showRendered();
      });
      const schemaRow = el("div", { class: "tllm-schema-row" }, [
        field("JSON schema (llama.cpp turns it into a grammar that masks every other token)", schemaBox),
      ]);
      schemaRow.hidden = true;
      jsonBox.addEventListener("change", () => {
        schemaRow.hidden = !jsonBox.checked;
      });
      body.appendChild(el("div", { class: "tllm-json" }, [field("JSON mode", jsonBox), example]));
      body.appendChild(schemaRow);
      rendered = el("pre", { class: "tllm-rendered" });
      body.appendChild(el("div", { class: "tllm-rendered-label", text: "What the model receives (the chat template applied; special tokens in red):" }));
      body.appendChild(rendered);
    }

    const generateButton = el("button", { type: "button", class: "tllm-generate", text: "Generate" });
    const stopButton = el("button", { type: "button", class: "tllm-stop", text: "Stop" });
    stopButton.disabled = true;
    const speed = el("span", { class: "tllm-speed" });
    const output = el("div", { class: "tllm-output", "aria-live": "polite" });
    const detail = el("div", { class: "tllm-detail", text: "Hover over (or tap) a generated token to see the five tokens the model found most likely at that step." });
    const tableWrap = el("details", { class: "tllm-table" }, [el("summary", { text: "Every step's top 5 (the model's probabilities, before the settings)" })]);

    root.append(
      el("div", { class: "tllm-load-row" }, [loadButton, progress, status]),
      pickRow,
      body,
      settings,
      el("div", { class: "tllm-actions" }, [generateButton, stopButton, speed]),
      message,
      output,
      detail,
      tableWrap,
    );

    function showRendered() {
      if (!rendered) return;
      const textValue = renderChat(systemBox.value, promptBox.value);
      rendered.textContent = "";
      for (const part of textValue.split(/(<\|im_start\|>|<\|im_end\|>)/)) {
        if (!part) continue;
        const special = part === "<|im_start|>" || part === "<|im_end|>";
        rendered.appendChild(el("span", { class: special ? "tllm-special" : "", text: part }));
      }
    }
    if (rendered) {
      showRendered();
      systemBox.addEventListener("input", showRendered);
      promptBox.addEventListener("input", showRendered);
    }

    function setMessage(text, ok) {
      message.textContent = text || "";
      message.classList.toggle("tllm-ok", !!ok);
    }

    function describe(top, chosen) {
      return top
        .map((t) => `${t.id === chosen ? "\u25b8 " : "  "}${showWhitespace(t.text).padEnd(14)} ${t.p.toFixed(3)}`)
        .join("\n");
    }

    async function load(file) {
      loadButton.disabled = true;
      setMessage("");
      status.textContent = file ? `reading ${file.name}` : "downloading";
      try {
        const info = await ready({
          file,
          onProgress: (loaded, total) => {
            progress.max = total || loaded;
            progress.value = loaded;
            status.textContent = total ? `${mb(loaded)} of ${mb(total)}` : mb(loaded);
          },
        });
        progress.max = 1;
        progress.value = 1;
        status.textContent = `loaded ${mb(info.modelBytes)} in ${(info.loadMs / 1000).toFixed(1)} s (llama.cpp ${CONFIG.wllama ? "via wllama " + CONFIG.wllama : ""}, ${info.threads} thread)`;
        loadButton.textContent = "Model loaded";
        picker.disabled = true;
        showRendered();
      } catch (e) {
        loadButton.disabled = false;
        status.textContent = "";
        setMessage(e.message || String(e));
      }
    }
    loadButton.addEventListener("click", () => load());
    const problem = browserProblem(); // said at once, not after a 98 MB download
    if (problem) {
      setMessage(problem);
      loadButton.disabled = true;
      picker.disabled = true;
    }
    picker.addEventListener("change", () => {
      if (picker.files && picker.files[0]) load(picker.files[0]);
    });

    async function run() {
      if (window.tutorialLLM.busy) {
        setMessage("A generation is already running: wait for it, or press Stop.");
        return;
      }
      if (!window.tutorialLLM.loaded) {
        setMessage("Load the model first (the button above).");
        return;
      }
      const opts = {};
      for (const [name, input] of Object.entries(inputs)) opts[name] = input.value;
      if (mode === "chat") {
        opts.chat = true;
        opts.system = systemBox.value;
        if (jsonBox.checked) opts.jsonSchema = schemaBox.value;
      }
      output.textContent = "";
      tableWrap.querySelectorAll("table").forEach((t) => t.remove());
      setMessage("");
      speed.textContent = "";
      const table = el("table", {}, [el("tr", {}, ["step", "token", "p", "top 5 (p)"].map((h) => el("th", { text: h })))]);
      let count = 0;
      const started = performance.now();
      opts.onToken = (token) => {
        count += 1;
        const step = count;
        const pChosen = (token.top.find((t) => t.id === token.id) || { p: NaN }).p;
        const end = window.tutorialLLM.isEnd(token.id);
        const span = el("span", { class: end ? "tllm-token tllm-end" : "tllm-token", tabindex: "0", text: token.text });
        span.title = describe(token.top, token.id);
        const show = () => (detail.textContent = `step ${step}, the model's top 5:\n${span.title}`);
        span.addEventListener("mouseenter", show);
        span.addEventListener("focus", show);
        output.appendChild(span);
        table.appendChild(
          el("tr", {}, [
            el("td", { text: String(step) }),
            el("td", { text: showWhitespace(token.text) }),
            el("td", { text: Number.isNaN(pChosen) ? "< top 5" : pChosen.toFixed(3) }),
            el("td", { text: token.top.map((t) => `${showWhitespace(t.text)} ${t.p.toFixed(2)}`).join(", ") }),
          ]),
        );
        const seconds = (performance.now() - started) / 1000;
        speed.textContent = `${count} tokens, ${(count / seconds).toFixed(1)} tokens/s`;
      };
      generateButton.disabled = true;
      stopButton.disabled = false;
      try {
        const result = await generate(promptBox.value, opts);
        tableWrap.appendChild(table);
        const rate = result.tokensPerSecond ? `${result.tokensPerSecond.toFixed(1)} tokens/s decoding` : "";
        speed.textContent = `${result.tokens.length} tokens${rate ? ", " + rate : ""}` + (result.stopped ? " (stopped)" : "");
        if (opts.jsonSchema) {
          try {
            JSON.parse(result.text);
            setMessage("The reply parses as JSON (the grammar allowed nothing else).", true);
          } catch (e) {
            setMessage(
              result.stopped || result.finishReason === "length"
                ? "The reply was cut off before the JSON object was complete: allow more tokens."
                : `The reply does not parse: ${e.message}`,
            );
          }
        }
      } catch (e) {
        setMessage(e.message || String(e));
      } finally {
        generateButton.disabled = false;
        stopButton.disabled = true;
      }
    }
    generateButton.addEventListener("click", run);
    stopButton.addEventListener("click", stop);
  }

  function init() {
    document.querySelectorAll(".tutorial-llm").forEach(build);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
