#!/usr/bin/env python3
"""
The PyTorch peer of scripts/bench/learner.ts: the same models, the same SAPO step and the same
generation in plain PyTorch on the CPU, on one thread — what RL Swarm's CPU mode runs. The
benchmark spawns it in the same run and prints the ratio; it can also be run by hand:

    python3 scripts/bench/torch_peer.py SPEC.json      (SPEC.json as learner.ts writes it)

It prints one JSON line of results on stdout (and nothing else there).

Two modes, named by the spec's "mode":

- "embedded": the embedded byte model of packages/sapo/src/model.ts (GPT-2 style: learned
  position embeddings, pre-LayerNorm, GELU tanh MLP, untied head), started from the very weights
  our run used, so the first step's loss and gradient norm can be compared with ours; trained on
  the very batch our step used, with the loss of packages/sapo/src/sapo.ts: the GRPO clipped ratio,
  a mean over completion tokens, micro-batches whose gradients are summed, global-norm clipping,
  Adam.
- "pretrained": a Llama/Qwen2-shaped model (packages/sapo/src/pretrained.ts: RMSNorm, rotary,
  grouped-query attention, SwiGLU, tied head, q/k/v biases for Qwen2) with random frozen weights
  and LoRA adapters on q/k/v/o/gate/up/down: load (build) time, peak RSS, generation tokens/s
  with a KV cache, and the LoRA step.

Only torch (and the standard library) is needed: Debian's python3-torch, with libopenblas0-pthread
so that its BLAS is OpenBLAS and not the reference BLAS (about 12x slower); "blas" in the output
lists the BLAS libraries this process really mapped.
"""

import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

NEG_INF = -1e9


def environment():
    """What ran: torch, its threads, the BLAS it mapped, and a 1024² matmul's speed on this thread."""
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split()[-1] for line in maps if "blas" in line or "lapack" in line})
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    seconds = (time.perf_counter() - start) / 5
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "blas": libraries,
        "matmul1024Gflops": round(2 * 1024**3 / seconds / 1e9, 1),
    }


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the SAPO step (sapo.ts) -------------------------------------------------------------------


def sapo_loss(new_log_probs, old_log_probs, advantages, mask, eps_low, eps_high, tokens):
    """−Σ min(ρA, clip(ρ)A)·mask / tokens: one micro-batch's share of the batch's per-token mean."""
    ratio = torch.exp(new_log_probs - old_log_probs)
    advantage = advantages[:, None]
    per_token = -torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantage)
    return (per_token * mask).sum() / max(tokens, 1)


def ratio_sums(new_log_probs, old_log_probs, advantages, mask, eps_low, eps_high):
    """The step statistics sapo.ts computes on every pass: clipped tokens and approximate KL."""
    log_ratio = new_log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    advantage = advantages[:, None]
    clipped = ((ratio > 1 + eps_high) & (advantage > 0)) | ((ratio < 1 - eps_low) & (advantage < 0))
    return torch.stack([(clipped.float() * mask).sum(), (((ratio - 1) - log_ratio) * mask).sum()])


def micro_batches(batch, rows):
    """The batch in micro-batches of `rows` rows, each cut to its longest completion (as sapo.ts)."""
    tokens, targets, mask, advantages = batch
    parts = []
    for start in range(0, tokens.shape[0], rows):
        part_mask = mask[start : start + rows]
        used = part_mask.nonzero()[:, 1].max().item() + 1 if part_mask.any() else 1
        parts.append(
            (
                tokens[start : start + rows, :used],
                targets[start : start + rows, :used],
                part_mask[:, :used],
                advantages[start : start + rows],
            )
        )
    return parts


def sapo_step(log_probs_and_entropy, params, optimizer, batch, rows, options):
    """One SAPO step with μ = 1: every micro-batch's forward and backward, gradients summed, clipped, Adam."""
    total = batch[2].sum().item()
    optimizer.zero_grad(set_to_none=True)
    loss_sum, sums = 0.0, torch.zeros(3)
    for tokens, targets, mask, advantages in micro_batches(batch, rows):
        log_probs, entropy = log_probs_and_entropy(tokens, targets)
        old = log_probs.detach()  # π_old: this policy, from the same forward pass
        loss = sapo_loss(log_probs, old, advantages, mask, options["epsLow"], options["epsHigh"], total)
        loss.backward()
        with torch.no_grad():
            ratios = ratio_sums(log_probs, old, advantages, mask, options["epsLow"], options["epsHigh"])
            sums += torch.cat([ratios, (entropy * mask).sum()[None]])
        loss_sum += loss.item()
    norm = torch.nn.utils.clip_grad_norm_(params, options["maxGradNorm"]).item()
    optimizer.step()
    return loss_sum, norm


def time_steps(model, batch, rows, options, steps):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=options["learningRate"], betas=(0.9, 0.999), eps=1e-8)
    # Warm-up (as ours): allocator and Adam moments; its loss and norm are the first step's.
    start = time.perf_counter()
    loss, norm = sapo_step(model.log_probs_and_entropy, params, optimizer, batch, rows, options)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        sapo_step(model.log_probs_and_entropy, params, optimizer, batch, rows, options)
        times.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times),
        "times": [round(t, 4) for t in times],
        "firstSeconds": first,
        "firstLoss": loss,
        "firstGradNorm": norm,
    }


# ---- generation (sample.ts) --------------------------------------------------------------------


@torch.no_grad()
def generate(model, prompts, max_new_tokens, rows, eos, generator, exclude=()):
    """Left-padded chunks of `rows` prompts, a KV cache, temperature 1 over the whole vocabulary; rows stop at EOS."""
    generated = 0
    for start in range(0, len(prompts), rows):
        chunk = prompts[start : start + rows]
        width = max(len(p) for p in chunk)
        pads = [width - len(p) for p in chunk]
        tokens = torch.tensor([[p[0]] * pad + p for p, pad in zip(chunk, pads)])
        key_bias = torch.tensor([[NEG_INF] * pad + [0.0] * len(p) for p, pad in zip(chunk, pads)])
        positions = torch.clamp(torch.arange(width)[None, :] - torch.tensor(pads)[:, None], min=0)
        logits, cache = model.forward_logits(tokens, positions, None, key_bias, last_only=True)
        done = torch.zeros(len(chunk), dtype=torch.bool)
        counts = [0] * len(chunk)
        for step in range(max_new_tokens):
            logits = logits[:, -1]
            if exclude:
                logits[:, list(exclude)] = -math.inf
            next_ids = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            for r in range(len(chunk)):
                if not done[r]:
                    counts[r] += 1
            done |= torch.isin(next_ids, torch.tensor(eos, dtype=torch.long))
            if done.all() or step == max_new_tokens - 1:
                break
            key_bias = torch.cat([key_bias, torch.zeros(len(chunk), 1)], 1)
            positions = positions[:, -1:] + 1
            logits, cache = model.forward_logits(next_ids[:, None], positions, cache, key_bias, last_only=True)
        generated += sum(counts)
    return generated


def time_generation(model, spec, exclude=()):
    generator = torch.Generator().manual_seed(3)
    g = spec["generation"]
    generate(model, g["prompts"][:2], 4, g["rows"], g["eos"], generator, exclude)  # warm-up
    best = None
    for _ in range(g.get("repeats", 1)):  # the best of `repeats` runs, as ours
        start = time.perf_counter()
        tokens = generate(model, g["prompts"], g["maxNewTokens"], g["rows"], g["eos"], generator, exclude)
        seconds = time.perf_counter() - start
        if best is None or tokens / seconds > best["tokensPerSecond"]:
            best = {"tokens": tokens, "seconds": seconds, "tokensPerSecond": tokens / seconds}
    return best


def causal_bias(steps, seen, key_bias):
    """[batch, 1, steps, seen + steps]: −1e9 above the diagonal and on padding keys."""
    causal = torch.triu(torch.full((steps, steps), NEG_INF), 1)
    causal = torch.cat([torch.zeros(steps, seen), causal], 1)[None, None]
    return causal if key_bias is None else causal + key_bias[:, None, None, :]


# ---- the embedded model (model.ts) -------------------------------------------------------------


class Embedded(torch.nn.Module):
    """model.ts's Policy: weights in its layout ([in, out] matrices, x·W), loaded from its parameterShapes order."""

    def __init__(self, config, parameters, weights_path):
        super().__init__()
        self.config = config
        flat = torch.from_file(weights_path, size=sum(math.prod(s) for _, s in parameters), dtype=torch.float32)
        self.p = torch.nn.ParameterDict()
        offset = 0
        for name, shape in parameters:
            size = math.prod(shape)
            self.p[name.replace(".", "_")] = torch.nn.Parameter(flat[offset : offset + size].clone().view(shape))
            offset += size

    def w(self, name):
        return self.p[name.replace(".", "_")]

    def forward_logits(self, tokens, positions, cache=None, key_bias=None, last_only=False):
        c = self.config
        batch, steps = tokens.shape
        d, heads = c["dModel"], c["heads"]
        size = d // heads
        seen = 0 if cache is None else cache[0][0].shape[2]
        x = self.w("tokenEmbedding")[tokens] + self.w("positionEmbedding")[positions]
        bias = causal_bias(steps, seen, key_bias)
        new_cache = []
        for l in range(c["layers"]):
            at = lambda name: self.w(f"layer{l}.{name}")  # noqa: E731
            h = F.layer_norm(x, (d,), at("ln1.gain"), at("ln1.bias"), 1e-5)
            qkv = torch.addmm(at("attn.qkv.bias"), h.view(-1, d), at("attn.qkv.weight"))
            q, k, v = (t.view(batch, steps, heads, size).transpose(1, 2) for t in qkv.split(d, -1))
            if cache is not None:
                k, v = torch.cat([cache[l][0], k], 2), torch.cat([cache[l][1], v], 2)
            new_cache.append((k, v))
            scores = q @ k.transpose(-1, -2) / math.sqrt(size) + bias
            attended = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(-1, d)
            x = x + torch.addmm(at("attn.out.bias"), attended, at("attn.out.weight")).view(batch, steps, d)
            h = F.layer_norm(x, (d,), at("ln2.gain"), at("ln2.bias"), 1e-5)
            hidden = F.gelu(torch.addmm(at("mlp.in.bias"), h.view(-1, d), at("mlp.in.weight")), approximate="tanh")
            x = x + torch.addmm(at("mlp.out.bias"), hidden, at("mlp.out.weight")).view(batch, steps, d)
        x = F.layer_norm(x, (d,), self.w("lnFinal.gain"), self.w("lnFinal.bias"), 1e-5)
        if last_only:
            x = x[:, -1:]
        return x @ self.w("head.weight"), new_cache

    def log_probs_and_entropy(self, tokens, targets):
        positions = torch.arange(tokens.shape[1])[None, :].expand_as(tokens)
        log_softmax = torch.log_softmax(self.forward_logits(tokens, positions)[0], -1)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        return log_softmax.gather(-1, targets[..., None])[..., 0], entropy


def batch_of(spec):
    b = spec["batch"]
    return (
        torch.tensor(b["tokens"]),
        torch.tensor(b["targets"]),
        torch.tensor(b["mask"], dtype=torch.float32),
        torch.tensor(b["advantages"], dtype=torch.float32),
    )


def run_embedded(spec):
    model = Embedded(spec["config"], spec["parameters"], spec["weights"])
    batch = batch_of(spec)
    step = {}
    for rows in spec["microBatchRows"]:
        # Each from the same starting weights, so every first step is comparable with ours.
        fresh = Embedded(spec["config"], spec["parameters"], spec["weights"])
        step[str(rows)] = time_steps(fresh, batch, rows, spec["sapo"], spec["steps"])
    return {"step": step, "generation": time_generation(model, spec)}


# ---- a pre-trained model's shape (pretrained.ts) -----------------------------------------------


class LoraLinear(torch.nn.Module):
    """x·Wᵀ (+ b) + (α/r)·(x·Aᵀ)·Bᵀ, W and b frozen, as PEFT's LoRA Linear (B starts at 0)."""

    def __init__(self, inputs, out, bias, lora):
        super().__init__()
        bound = 0.02 * math.sqrt(3)
        self.weight = torch.nn.Parameter(torch.empty(out, inputs).uniform_(-bound, bound), requires_grad=False)
        self.bias = torch.nn.Parameter(torch.zeros(out), requires_grad=False) if bias else None
        self.a = torch.nn.Parameter(torch.empty(lora["rank"], inputs).uniform_(-1 / math.sqrt(inputs), 1 / math.sqrt(inputs)))
        self.b = torch.nn.Parameter(torch.zeros(out, lora["rank"]))
        self.scale = lora["alpha"] / lora["rank"]

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.a) * self.scale, self.b)


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


class Pretrained(torch.nn.Module):
    """transformers' LlamaForCausalLM / Qwen2ForCausalLM (eager attention), random frozen weights, LoRA on every projection."""

    def __init__(self, c, lora):
        super().__init__()
        self.c = c
        d, hd, bound = c["hiddenSize"], c["headDim"], 0.02 * math.sqrt(3)
        self.embed = torch.nn.Parameter(torch.empty(c["vocabSize"], d).uniform_(-bound, bound), requires_grad=False)
        if not c["tieWordEmbeddings"]:
            self.head = torch.nn.Parameter(torch.empty(c["vocabSize"], d).uniform_(-bound, bound), requires_grad=False)
        bias = c["attentionBias"] or c["architecture"] == "qwen2"
        targets = set(lora["targets"])
        assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            layer = torch.nn.Module()
            layer.q = LoraLinear(d, c["heads"] * hd, bias, lora)
            layer.k = LoraLinear(d, c["kvHeads"] * hd, bias, lora)
            layer.v = LoraLinear(d, c["kvHeads"] * hd, bias, lora)
            layer.o = LoraLinear(c["heads"] * hd, d, False, lora)
            layer.gate = LoraLinear(d, c["intermediateSize"], False, lora)
            layer.up = LoraLinear(d, c["intermediateSize"], False, lora)
            layer.down = LoraLinear(c["intermediateSize"], d, False, lora)
            layer.norm1 = torch.nn.Parameter(torch.ones(d), requires_grad=False)
            layer.norm2 = torch.nn.Parameter(torch.ones(d), requires_grad=False)
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(d), requires_grad=False)
        self.inv_freq = 1.0 / (c["ropeTheta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))

    def forward_logits(self, tokens, positions, cache=None, key_bias=None, last_only=False):
        c = self.c
        batch, steps = tokens.shape
        heads, kv_heads, hd, eps = c["heads"], c["kvHeads"], c["headDim"], c["rmsNormEps"]
        seen = 0 if cache is None else cache[0][0].shape[2]
        angles = positions[..., None].float() * self.inv_freq
        angles = torch.cat([angles, angles], -1)
        cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # [batch, 1, steps, hd]
        bias = causal_bias(steps, seen, key_bias)
        x = self.embed[tokens]
        new_cache = []
        for l, layer in enumerate(self.layers):
            h = rms_norm(x, layer.norm1, eps)
            q = layer.q(h).view(batch, steps, heads, hd).transpose(1, 2)
            k = layer.k(h).view(batch, steps, kv_heads, hd).transpose(1, 2)
            v = layer.v(h).view(batch, steps, kv_heads, hd).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            if cache is not None:
                k, v = torch.cat([cache[l][0], k], 2), torch.cat([cache[l][1], v], 2)
            new_cache.append((k, v))
            # transformers' repeat_kv: each key/value head serves heads / kv_heads query heads.
            keys = k.repeat_interleave(heads // kv_heads, 1)
            values = v.repeat_interleave(heads // kv_heads, 1)
            scores = q @ keys.transpose(-1, -2) / math.sqrt(hd) + bias
            attended = (torch.softmax(scores, -1) @ values).transpose(1, 2).reshape(batch, steps, heads * hd)
            x = x + layer.o(attended)
            h = rms_norm(x, layer.norm2, eps)
            x = x + layer.down(F.silu(layer.gate(h)) * layer.up(h))
        x = rms_norm(x, self.norm, eps)
        if last_only:
            x = x[:, -1:]
        return F.linear(x, self.embed if c["tieWordEmbeddings"] else self.head), new_cache

    def log_probs_and_entropy(self, tokens, targets):
        positions = torch.arange(tokens.shape[1])[None, :].expand_as(tokens)
        log_softmax = torch.log_softmax(self.forward_logits(tokens, positions)[0], -1)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        return log_softmax.gather(-1, targets[..., None])[..., 0], entropy


def run_pretrained(spec):
    start = time.perf_counter()
    model = Pretrained(spec["config"], spec["lora"])
    build = time.perf_counter() - start
    rss = peak_rss_mib()
    generation = time_generation(model, spec)
    batch = batch_of(spec)
    step = {str(rows): time_steps(model, batch, rows, spec["sapo"], spec["steps"]) for rows in spec["microBatchRows"]}
    return {"buildSeconds": build, "rssAfterBuildMiB": rss, "generation": generation, "step": step}


# ---- main --------------------------------------------------------------------------------------


def main():
    with open(sys.argv[1]) as file:
        spec = json.load(file)
    torch.set_num_threads(spec.get("threads", 1))
    torch.manual_seed(0)
    result = {"environment": environment()}
    if spec["mode"] == "embedded":
        result.update(run_embedded(spec))
    elif spec["mode"] == "pretrained":
        result.update(run_pretrained(spec))
    else:
        raise SystemExit(f"unknown mode {spec['mode']!r}")
    result["peakRssMiB"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
