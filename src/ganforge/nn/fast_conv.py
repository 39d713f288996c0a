"""Convolution layers that route each direction of a training step to the fastest CPU kernel.

oneDNN's CPU convolutions are fast in the forward direction and uneven elsewhere. Measured on this
project's 2-core AVX-512 CPU in bf16 with channels-last tensors (ms, PyTorch's own route / the route
taken here; a shared machine, so +-30%):

- **Weight gradients with a small output map.** oneDNN's backward-weights kernel for bf16 is an
  older JIT one. The weight gradient is itself a convolution, of the input (batch and channel
  swapped) with the output gradient as a dilated kernel; run through the forward kernel it is much
  faster when the output map is small: D's 128 -> 256 layer at 8x8 -> 4x4, batch 128: 15.1 / 5.5;
  64 -> 128 at 16x16 -> 8x8: 12.9 / 8.8; 256 -> 512 at 8x8 -> 4x4, batch 64: 17.8 / 9.3; G's
  100 -> 256 seed layer: 2.8 / 0.5. With larger maps the forward kernel loses (64 -> 128 at
  32x32 -> 16x16: 13.3 / 17.8), so only output maps of at most ``SWAP_MAX_PIXELS`` pixels take
  this route.
- **The image end.** A transposed convolution down to one channel (G's last layer) runs 4.8 / 1.9
  as one matmul plus a col2im (``F.fold``); a convolution from one channel (D's first layer) gets
  its input gradient, needed in every G step, 4.9 / 2.6 the same way. A transposed convolution's
  input gradient is an ordinary convolution, so it comes from ``F.conv2d``'s forward kernel: much
  faster than the transposed layer's own backward kernel for few output channels (64 -> 3 at
  64x64, forward and both gradients: 22.2 / 18.0), the same speed for wide ones. With 2-4 image
  channels, a 4x4 stride-2 transposed convolution (G's RGB output, and D's RGB input gradient)
  runs as one 3x3 convolution to one channel set per output phase plus a pixel shuffle (64 -> 3
  at 32x32 -> 64x64, batch 64, one thread: 25.4 / 14.0).

:class:`FastConv2d` and :class:`FastConvTranspose2d` subclass ``nn.Conv2d`` and
``nn.ConvTranspose2d`` (same parameters, state-dict keys and init), compute in the autocast dtype
like the built-in layers, and take these routes on CPUs only: on other devices, and for grouped,
dilated or non-zero-padded layers, they are the built-in layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# Output maps up to this many pixels take the weight gradient through the forward kernel.
SWAP_MAX_PIXELS = 64
# Image-side channel count up to which matmul + fold was measured to win (it loses at 3).
FOLD_MAX_CHANNELS = 1
# Image-side channel counts above that, up to this, take the sub-pixel route (4x4 stride 2 only).
SUBPIXEL_MAX_CHANNELS = 4


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def _grad_like(g: torch.Tensor, w: tuple[torch.dtype, torch.Size, tuple[int, ...]]) -> torch.Tensor:
    """g in the weight's (dtype, shape, strides) with one copy; AccumulateGrad would otherwise copy
    it again into the parameter's layout (channels-last weights under ``train.channels_last``)."""
    dtype, shape, stride = w
    if g.dtype == dtype and g.stride() == stride:
        return g
    return torch.empty_strided(shape, stride, dtype=dtype, device=g.device).copy_(g)


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _fold_transposed(
    x: torch.Tensor, w: torch.Tensor, out_hw: tuple[int, int], stride, padding
) -> torch.Tensor:
    """conv_transpose2d(x, w): per position cols = W^T x, then overlap-add (col2im).

    x: (N, Cin, H, W); w: (Cin, Cout, kh, kw) -> (N, Cout, *out_hw).
    """
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    # Rows of x in NHWC order: a view of a channels-last x, so the matmul reads it in place.
    cols = x.permute(0, 2, 3, 1).reshape(n, h * wd, c) @ w.reshape(c, -1)  # (N, H*W, Cout*kh*kw)
    return F.fold(cols.transpose(1, 2), out_hw, (kh, kw), padding=padding, stride=stride)


# Sub-pixel form of a 4x4, stride-2, padding-1 transposed convolution: output row 2a + r reads input
# rows a-1 and a (r = 0, kernel rows 3 and 1) or a and a+1 (r = 1, kernel rows 2 and 0). Over a 3x3
# window at a, phase (r, s) is a 3x3 kernel with the unused taps zero; _SUBPIXEL_TAPS[r, s, dy, dx]
# is the 4x4 tap feeding window position (dy, dx), or 16 for none.
def _subpixel_taps() -> torch.Tensor:
    rows = {0: {0: 3, 1: 1}, 1: {1: 2, 2: 0}}  # phase -> {window offset: kernel row}
    taps = torch.full((2, 2, 3, 3), 16, dtype=torch.long)
    for r in (0, 1):
        for s in (0, 1):
            for dy, u in rows[r].items():
                for dx, v in rows[s].items():
                    taps[r, s, dy, dx] = 4 * u + v
    return taps


_SUBPIXEL_TAPS = _subpixel_taps()


def _is_subpixel_shape(w: torch.Tensor, stride, padding) -> bool:
    return tuple(w.shape[2:]) == (4, 4) and tuple(stride) == (2, 2) and tuple(padding) == (1, 1)


def _subpixel_transposed(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d(x, w, stride=2, padding=1) for a 4x4 kernel with few output channels, as one
    3x3 convolution to 4x the channels (one per output phase) and a pixel shuffle. oneDNN's
    transposed kernel idles on a 3-channel output (64 -> 3 at 32x32 -> 64x64, batch 64: about
    1.8x slower); the 3x3 form does 9/4 of the multiply-adds on the forward kernel.

    x: (N, Cin, H, W); w: (Cin, Cout, 4, 4) -> (N, Cout, 2H, 2W).
    """
    cin, cout = w.shape[:2]
    flat = torch.cat([w.reshape(cin, cout, 16), w.new_zeros(cin, cout, 1)], dim=2)
    sub = flat[:, :, _SUBPIXEL_TAPS.to(w.device)]  # (Cin, Cout, 2, 2, 3, 3)
    # Channel order (co, r, s), the order pixel_shuffle reads.
    sub = sub.permute(1, 2, 3, 0, 4, 5).reshape(4 * cout, cin, 3, 3)
    return F.pixel_shuffle(F.conv2d(x, sub.contiguous(memory_format=torch.channels_last), padding=1), 2)


def _builtin_backward(
    g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride, padding, want_input: bool
) -> torch.Tensor:
    """One gradient of y = conv2d(x, w) (dL/dx if ``want_input``, else dL/dw) by PyTorch's own kernel."""
    mask = [want_input, not want_input, False]
    grads = torch.ops.aten.convolution_backward(
        g, x, w, None, list(stride), list(padding), [1, 1], False, [0, 0], 1, mask
    )
    return grads[0] if want_input else grads[1]


def _batch_as_channels(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (C, N, H, W), the swapped weight gradient's operand layout (a view; the
    convolution makes the copy). ``benchmarks/step_bounds.py`` replaces it to time a free copy."""
    return t.transpose(0, 1)


def conv_weight_grad(
    grad_out: torch.Tensor, inp: torch.Tensor, weight: torch.Tensor, stride, padding
) -> torch.Tensor:
    """dL/dw for y = conv2d(inp, w, stride, padding) given dL/dy, by the faster route for its shape.

    The swapped form: dL/dw[o, c, u, v] = sum_{n,i,j} g[n, o, i, j] x_pad[n, c, s*i + u, s*j + v],
    which is conv2d(x^T, g^T, padding, dilation=stride) with the batch as the channel axis
    (x^T: (C, N, H, W) as a batch of C images, g^T: (O, N, Ho, Wo) as O dilated kernels).
    """
    kh, kw = weight.shape[2:]
    if grad_out.shape[2] * grad_out.shape[3] <= SWAP_MAX_PIXELS:
        r = F.conv2d(_batch_as_channels(inp), _batch_as_channels(grad_out), padding=padding, dilation=stride)
        r = r[:, :, :kh, :kw]
        if r.is_contiguous() and _is_channels_last(weight):
            # r is (C, O, kh, kw) and the weight's layout (O, kh, kw, C): one 2-D transpose of the
            # (C, O*kh*kw) matrix, several times faster than the generic permuted copy to it
            # (512x256x4x4 in bf16: 1.2 / 7 ms).
            c, o = r.shape[:2]
            return r.reshape(c, o * kh * kw).t().contiguous().view(o, kh, kw, c).permute(0, 3, 1, 2)
        return r.transpose(0, 1)
    return _builtin_backward(grad_out, inp, weight, stride, padding, want_input=False)


def _image_end_transposed(
    x: torch.Tensor, w: torch.Tensor, out_hw: tuple[int, int], stride, padding
) -> torch.Tensor | None:
    """conv_transpose2d(x, w) to ``out_hw`` for few output channels: matmul + fold for one, the
    sub-pixel form for 2-4 (4x4 stride 2, output exactly twice the input); None where PyTorch's
    own kernel is the route. Serves G's image layer and D's image-layer input gradient alike."""
    cout = w.shape[1]
    if cout <= FOLD_MAX_CHANNELS:
        return _fold_transposed(x, w, out_hw, stride, padding)
    doubled = tuple(out_hw) == (2 * x.shape[2], 2 * x.shape[3])
    if cout <= SUBPIXEL_MAX_CHANNELS and _is_subpixel_shape(w, stride, padding) and doubled:
        return _subpixel_transposed(x, w)
    return None


def _conv_input_grad(g: torch.Tensor, xc: torch.Tensor, wc: torch.Tensor, stride, padding) -> torch.Tensor:
    """dL/dx for y = conv2d(x, w): the image-end routes back to few channels, else PyTorch's kernel."""
    gx = _image_end_transposed(g, wc, tuple(xc.shape[2:]), stride, padding)
    return gx if gx is not None else _builtin_backward(g, xc, wc, stride, padding, want_input=True)


class _RoutedConvFn(torch.autograd.Function):
    """y = conv2d(x, w) + b, or with ``out_hw`` given conv_transpose2d(x, w) + b (the adjoint of
    conv2d(., w)), with each direction of the backward pass on the route chosen above."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, out_hw):  # type: ignore[override]
        dt = _compute_dtype(x)
        xc, wc = x.to(dt), w.to(dt)
        bc = b.to(dt) if b is not None else None
        with torch.autocast("cpu", enabled=False):
            if out_hw is None:
                y = F.conv2d(xc, wc, bc, stride=stride, padding=padding)
            elif (y := _image_end_transposed(xc, wc, out_hw, stride, padding)) is not None:
                if bc is not None:
                    y = y + bc.view(1, -1, 1, 1)
            else:
                y = F.conv_transpose2d(xc, wc, bc, stride=stride, padding=padding)
        ctx.save_for_backward(xc, wc)
        ctx.conf = (
            stride,
            padding,
            x.dtype,
            (w.dtype, w.shape, w.stride()),
            b is not None,
            out_hw is not None,
        )
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        xc, wc = ctx.saved_tensors
        stride, padding, x_dtype, w, has_bias, transposed = ctx.conf
        g = grad.to(wc.dtype)
        gx = gw = gb = None
        with torch.autocast("cpu", enabled=False):
            if ctx.needs_input_grad[0]:
                # The adjoint of a transposed convolution is the plain convolution with the same w.
                gx = (
                    F.conv2d(g, wc, stride=stride, padding=padding)
                    if transposed
                    else _conv_input_grad(g, xc, wc, stride, padding)
                )
                gx = gx.to(x_dtype)
            if ctx.needs_input_grad[1]:
                # For the transposed layer x = conv2d(y, w) in shape terms, so dL/dw is that
                # convolution's weight gradient with x in the role of the output gradient.
                gw = (
                    conv_weight_grad(xc, g, wc, stride, padding)
                    if transposed
                    else conv_weight_grad(g, xc, wc, stride, padding)
                )
                gw = _grad_like(gw, w)
            if has_bias and ctx.needs_input_grad[2]:
                gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None, None


def _routable(m: nn.Module, x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and m.groups == 1
        and _pair(m.dilation) == (1, 1)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


class FastConv2d(nn.Conv2d):
    """``nn.Conv2d`` taking the faster gradient routes of this module on CPUs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _routable(self, x):
            return super().forward(x)
        return _RoutedConvFn.apply(x, self.weight, self.bias, _pair(self.stride), _pair(self.padding), None)


class FastConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` taking the faster routes of this module on CPUs."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if not _routable(self, x) or output_size is not None or _pair(self.output_padding) != (0, 0):
            return super().forward(x, output_size)
        (sh, sw), (ph, pw), (kh, kw) = _pair(self.stride), _pair(self.padding), _pair(self.kernel_size)
        out_hw = ((x.shape[2] - 1) * sh - 2 * ph + kh, (x.shape[3] - 1) * sw - 2 * pw + kw)
        return _RoutedConvFn.apply(x, self.weight, self.bias, (sh, sw), (ph, pw), out_hw)
