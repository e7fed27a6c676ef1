"""The playground critic's update for Linear/ReLU MLPs, written out as plain tensor code (forward,
input gradient, penalty and weight gradients, no autograd graph), and its torch.compile'd
version, built in a background thread and used once ready.

Why written out: ReLU's derivative is a 0/1 mask whose own derivative is zero, so the WGAN-GP
penalty's weight gradients are one more pass back through the input-gradient chain; autograd's
generic double backward carries those zeros through every layer and cannot be compiled quickly.
As plain tensor code it compiles in 10-20 s per process, variant and thread count on this CPU
(1-5 s from inductor's disk cache), with dynamic shapes; the compiled step fuses the masks and
products around the matmuls and drops the per-op Python overhead: WGAN-GP critic steps 1.4-1.7x
the autograd step's rate (bench/toy_speed.py, docs/performance.md). The loss values and their derivatives still come from
core.gan.losses, so the playground and the image trainer share one set of loss functions.
"""

from __future__ import annotations

import concurrent.futures
import threading

import torch
from torch import Tensor, nn

from core.gan.losses import (
    gan_critic_loss,
    interpolate,
    penalty_from_grads,
    wgan_critic_loss,
)


def linear_relu_params(net: nn.Sequential) -> list[Tensor]:
    """[W1, b1, ..., Wk, bk] of a Linear/ReLU/.../Linear stack (nn.Linear layout: W (out, in)),
    the module's own Parameters."""
    kinds = [type(m) for m in net]
    expected = [nn.Linear, nn.ReLU] * (len(net) // 2) + [nn.Linear]
    if kinds != expected:
        raise ValueError("needs an alternating Linear/ReLU stack ending in a Linear layer")
    return [t for m in net if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]


def relu_mlp(params: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """(output (N, out), the input of every Linear [x, h1, ..., hL], the ReLU masks [m1, ..., mL]
    as 0/1 floats). sign(h) of h >= 0 is the mask: (a > 0).float() goes through a bool tensor,
    about 8x slower here."""
    hs, masks, h = [x], [], x
    for w, b in zip(params[0:-2:2], params[1:-2:2]):
        h = torch.addmm(b, h, w.t()).clamp_min(0)  # (N, H)
        hs.append(h)
        masks.append(torch.sign(h))
    return torch.addmm(params[-1], h, params[-2].t()), hs, masks


def _critic_loss(loss: str, scores: Tensor) -> Tensor:
    real, fake = scores.chunk(2)  # scores: (2B, 1), real rows first
    return gan_critic_loss(real, fake) if loss == "gan" else wgan_critic_loss(real, fake)


def _loss_grads(loss: str, scores: Tensor, input_grads: Tensor | None):
    """(loss, penalty or None, d loss / d scores, d penalty / d input_grads or None), by
    differentiating core.gan.losses' own functions on these two small tensors."""
    def objective(s, g):  # -> (loss [+ penalty], (loss, [penalty])): torch.func wants tensors
        value = _critic_loss(loss, s)
        if g is None:
            return value, (value,)
        pen = penalty_from_grads(g)[0]
        return value + pen, (value, pen)

    argnums = (0, 1) if input_grads is not None else (0,)
    if torch.compiler.is_compiling():
        # torch.func traces into the compiled graph (autograd.grad would break it).
        grads, values = torch.func.grad(objective, argnums=argnums, has_aux=True)(
            scores, input_grads)
    else:
        # Eager: autograd on two leaves is ~3x cheaper than torch.func's transforms here.
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in (scores, input_grads)
                      if t is not None]
            total, values = objective(*leaves, *([None] * (2 - len(leaves))))
            grads = torch.autograd.grad(total, leaves)
    d_scores, d_input = grads[0], (grads[1] if len(grads) > 1 else None)
    pen = values[1].detach() if len(values) > 1 else None
    return values[0].detach(), pen, d_scores, d_input


def critic_update(gen_params: list[Tensor], critic_params: list[Tensor], z: Tensor, real: Tensor,
                  alpha: Tensor, gp_lambda: Tensor, loss: str, penalty: bool):
    """One critic update's numbers, for generator and critic given as linear_relu_params.

    z (B, noise), real (B, D), alpha (B, 1): the batch's noise, real points and interpolation
    weights; gp_lambda: a 0-d tensor (a float would be baked into the compiled code). Returns
    (fake (B, D), scores (2B, 1) real rows first, the critic's loss with gp_lambda * penalty
    added, penalty or None, gradients aligned with critic_params): the same numbers as autograd
    through core.gan.losses with gradient_penalty's double backward (tests/test_toy_step.py)."""
    B = real.shape[0]
    fake = relu_mlp(gen_params, z)[0]  # (B, D)
    rows = [real, fake, interpolate(real, fake, alpha)] if penalty else [real, fake]
    scores, hs, masks = relu_mlp(critic_params, torch.cat(rows))  # (N, 1), N = 2B or 3B
    weights = critic_params[0::2]
    n_hidden = len(masks)

    # gs[k] (N, H): d score / d (pre-activation of hidden layer k), row by row; the last is
    # w_out * m_L, each earlier one (gs[k + 1] @ W_{k+1}) * m_k.
    gs = [weights[-1] * masks[-1]]
    for w, m in zip(reversed(weights[1:-1]), reversed(masks[:-1])):
        gs.insert(0, (gs[0] @ w) * m)
    rf = slice(0, 2 * B)  # real and fake rows; interpolates after them
    input_grads = gs[0][2 * B:] @ weights[0] if penalty else None  # (B, D) d critic / d x

    value, pen, d_scores, d_input = _loss_grads(loss, scores[rf], input_grads)  # (2B, 1), (B, D)

    # The loss term is ordinary backprop: its error at hidden layer k is d_scores * gs[k] on the
    # real and fake rows. The penalty term flows back through the input-gradient chain
    # u_k = gs[k] @ W_k, gs[k] = u_{k+1} * m_k (the masks are constants), starting from
    # du_0 = gp_lambda * d penalty / d input_grads.
    grads: list[Tensor] = [None] * len(critic_params)  # type: ignore[list-item]
    grads[-2] = d_scores.t() @ hs[-1][rf]  # (1, H)
    grads[-1] = d_scores.sum(0)  # (1,)
    du = d_input * gp_lambda if penalty else None  # (B, D)
    for k in range(n_hidden):
        delta = gs[k][rf] * d_scores  # (2B, H)
        grad_w = delta.t() @ hs[k][rf]  # (H, in)
        if penalty:
            grad_w = torch.addmm(grad_w, gs[k][2 * B:].t(), du)
            dg = (du @ weights[k].t()) * masks[k][2 * B:]  # (B, H): at gs[k], masked
            if k == n_hidden - 1:
                grads[-2] = grads[-2] + dg.sum(0, keepdim=True)  # gs[L-1] = w_out * m_L
            du = dg
        grads[2 * k] = grad_w
        grads[2 * k + 1] = delta.sum(0)
    total = value + gp_lambda * pen if penalty else value
    return fake, scores[rf], total, pen, grads


# ---------------------------------------------------------------------------------------------
# The compiled version, built once per process and variant in a background thread: the page
# keeps training with the eager code meanwhile and never waits for the compiler.

_LOCK = threading.Lock()
_BUILDS: dict[tuple, concurrent.futures.Future] = {}
_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_COMPILED = None


def variant_key(gen_params: list[Tensor], critic_params: list[Tensor], loss: str,
                penalty: bool) -> tuple:
    """What a compiled variant is specialised on: loss, penalty, layer count and which sizes are
    1 (dynamic shapes treat every other size as a symbol, so batch and width changes reuse it)."""
    def sizes(params):
        return tuple(tuple(min(s, 2) for s in p.shape) for p in params)
    return loss, penalty, sizes(gen_params), sizes(critic_params)


def _build(args: tuple, threads: int) -> None:
    # The compiled code is specialised on the torch thread count, which is per OS thread here
    # (OpenMP), so this sets the caller's count for the builder's thread only. Torch's config
    # is per thread too, hence the patches here: no "duck sizing" (sizes that happen to be equal,
    # noise dimension 2 and data dimension 2, say, would be assumed equal, and a new noise
    # dimension would then compile again in the caller's thread), and room for the variants
    # (loss x penalty x sizes of 1 x thread count) past dynamo's default limit of 8.
    torch.set_num_threads(threads)
    with (torch.fx.experimental._config.patch(use_duck_shape=False),
          torch._dynamo.config.patch(recompile_limit=64), torch.no_grad()):
        _COMPILED(*args)  # the first call compiles; same grad mode as the calls that follow


def _failed(error: BaseException) -> concurrent.futures.Future:
    future = concurrent.futures.Future()
    future.set_exception(error)
    return future


def _guarded(key: tuple):
    """_COMPILED, falling back to the eager code for good should it raise at run time (an
    unexpected recompile that fails, say): training goes on, the reason is kept."""
    def run(*args):
        try:
            return _COMPILED(*args)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: stay eager
            with _LOCK:
                _BUILDS[key] = _failed(e)
            return critic_update(*args)
    return run


def compiled_critic_update(key: tuple, example_args: tuple, also_threads: tuple[int, ...] = ()):
    """The compiled critic_update if the variant `key` is built for the calling thread's torch
    thread count, else None. Starts the builds not yet started (on copies of example_args) for
    that count first, then for each of also_threads (those the caller may switch to). Also None
    while any build runs: dynamo compiles one function at a time, and eager steps meanwhile are
    safe. Raises RuntimeError with the compiler's message if the build failed (no C++ compiler,
    say). Pass plain tensors (Parameter.detach()), as the builds do: the compiled code checks
    the type, and a Parameter would compile it again in the caller."""
    global _EXECUTOR, _COMPILED
    threads = torch.get_num_threads()
    with _LOCK:
        for n in dict.fromkeys((threads, *also_threads)):  # ordered, without repeats
            if (*key, n) in _BUILDS:
                continue
            if _COMPILED is None:
                _COMPILED = torch.compile(critic_update, dynamic=True, fullgraph=True)
                _EXECUTOR = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="toy-compile")
            copies = tuple([t.detach().clone() for t in a] if isinstance(a, list)
                           else a.detach().clone() if isinstance(a, Tensor) else a
                           for a in example_args)
            _BUILDS[(*key, n)] = _EXECUTOR.submit(_build, copies, n)
        future = _BUILDS[(*key, threads)]
        if not all(f.done() for f in _BUILDS.values()):
            return None
    if future.exception() is not None:
        raise RuntimeError(f"{type(future.exception()).__name__}: {future.exception()}")
    return _guarded((*key, threads))
