"""S1+S2 temporal cross-attention generator (probabilistic), after Defonte et al. 2026.

Per pixel, a query built from the target date (time encoding, day of year) and the linear
baseline cross-attends over the K nearest S2 observations (10 bands + validity) and S1
observations (VV, VH, VV-VH), each encoded by its own small convolutional encoder (spatial
context) plus a sinusoidal encoding of its signed distance in days to the target and its day
of year. Cloudy / missing pixels are masked out of the attention (a learned always-valid
"null" token keeps the softmax defined when everything is masked). The head outputs per band
a mean and a log-variance; the mean is a learned per-pixel blend of the three baselines
(linear interpolation, previous and next clear observation, unavailable ones masked out) plus a
correction, so an untrained model already predicts a mix of the baselines; everything is in reflectance outside
(normalisation happens inside, statistics are buffers), so the ONNX export is self-contained.

torch is imported by whoever imports this module (never at core import time).
"""

from __future__ import annotations

import math

import torch
from torch import nn

N_S2 = 10
N_S1 = 2
PERIODS = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
YEAR = 365.25
# input names and their axes, in the order forward() takes them (the ONNX signature)
INPUTS = ("s2", "s2_valid", "s2_dt", "s1", "s1_valid", "s1_dt", "base", "near", "base_info", "target_doy",
          "s1_change",  # only for models built with s1_change=True (contract version 3)
          "obs_s1_change")  # only for models built with obs_s1_change=True (contract version 4)
N_CHANGE = 3  # s1_change channels: VV, VH change (dB) since the dates of the linear baseline, known (0/1)
# obs_s1_change: the same 3 channels per S2 observation, S1 at the target minus S1 at that observation's date
N_INFO = 5  # base_info channels: baseline valid, days to previous / next clear / 100, has previous / next
N_BLEND = 3  # the mean is a correction over a learned per-pixel, per-band blend of linear / previous / next
S1_CHANGE_DB = 3.0  # scale of the s1_change input (dB)
CLOUD_WINDOWS = (7, 21)  # cloud_context: windows (px) of the clear fraction around each pixel
OUTPUTS = ("mean", "logvar")


def input_names(s1_change: bool, obs_s1_change: bool = False) -> list[str]:
    """The model's inputs, in forward() order: INPUTS without the optional ones it was built without."""
    return list(INPUTS[:10]) + (["s1_change"] if s1_change else []) + (["obs_s1_change"] if obs_s1_change else [])


def time_features(dt: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
    """(..., F) sinusoidal features of signed day offsets `dt` and day of year `doy`."""
    feats = []
    for p in PERIODS:
        a = dt * (2.0 * math.pi / p)
        feats += [torch.sin(a), torch.cos(a)]
    feats.append(torch.sign(dt) * torch.log1p(torch.abs(dt)) / 6.0)
    a = doy * (2.0 * math.pi / YEAR)
    feats += [torch.sin(a), torch.cos(a)]
    return torch.stack(feats, dim=-1)


N_TIME = 2 * len(PERIODS) + 3


def clear_fraction(s2v: torch.Tensor) -> torch.Tensor:
    """(n, K, len(CLOUD_WINDOWS), h, w): fraction of clear pixels in windows around each pixel of
    each observation (pixels beside clouds are often hazy although their class says clear)."""
    v = s2v.transpose(1, 2)  # n 1 K h w: summed over (h, w) windows only, no reshape (dynamic K in ONNX)
    inside = torch.ones_like(v[:, :, :1])  # the pixels of each window inside the image: the same for every K
    out = []
    for w in CLOUD_WINDOWS:  # convolutions with ones, not a pooling: works on images smaller than w
        out.append(_box_sum(v, w) / _box_sum(inside, w))
    return torch.cat(out, dim=1).transpose(1, 2)


def _box_sum(v: torch.Tensor, w: int) -> torch.Tensor:
    """Sums of (n, 1, K, h, w) over w x w windows (zero outside): a row pass and a column pass, 2 w
    additions per pixel instead of w * w, exact for the 0/1 masks it sums."""
    ones = torch.ones(1, 1, 1, 1, w, dtype=v.dtype, device=v.device)
    rows = nn.functional.conv3d(v, ones, padding=(0, 0, w // 2))
    return nn.functional.conv3d(rows, ones.transpose(3, 4), padding=(0, w // 2, 0))


class ObsEncoder(nn.Module):
    """3x3 convolutions (full, then depthwise) and a 1x1 mix over one observation
    (channels + validity) -> d features with a 5x5 spatial context."""

    def __init__(self, c_in: int, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, d, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(d, d, 3, padding=1, groups=d), nn.GELU(),
                                 nn.Conv2d(d, d, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, K, c, h, w) -> (n, K, d, h, w)
        n, k = x.shape[0], x.shape[1]
        y = self.net(x.flatten(0, 1))
        return y.unflatten(0, (n, k))


class CrossAttention(nn.Module):
    """Per-pixel multi-head attention of one query over K tokens, channels-first, with masks."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q = nn.Conv2d(d, d, 1)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Conv2d(d, d, 1)
        self.null_k = nn.Parameter(torch.zeros(d))
        self.null_v = nn.Parameter(torch.zeros(d))

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (n, d, h, w); tokens (n, K, d, h, w); valid (n, K, h, w) in {0, 1}.

        Returns the attended features (n, d, h, w) and the weights (n, heads, K + 1, h, w),
        the last slot being the null token.
        """
        t = tokens.permute(0, 1, 3, 4, 2)  # n K h w d
        k = self.k(t)
        v = self.v(t)
        zero = torch.zeros_like(k[:, :1])  # shapes taken from data, so the ONNX graph stays dynamic
        nk = zero + self.null_k
        nv = zero + self.null_v
        k = torch.cat([k, nk], dim=1).unflatten(-1, (self.h, self.dh))  # n K+1 h w H dh
        v = torch.cat([v, nv], dim=1).unflatten(-1, (self.h, self.dh))
        q = self.q(query).permute(0, 2, 3, 1).unflatten(-1, (self.h, self.dh))  # n h w H dh
        scores = (k * q.unsqueeze(1)).sum(-1) / math.sqrt(self.dh)  # n K+1 h w H
        ones = torch.ones_like(valid[:, :1])
        keep = (torch.cat([valid, ones], dim=1).unsqueeze(-1) > 0.5).to(scores.dtype)
        scores = scores * keep - (1.0 - keep) * 1e4  # masked keys get no weight
        attn = torch.softmax(scores, dim=1)
        out = (attn.unsqueeze(-1) * v).sum(1).flatten(-2)  # n h w d
        return self.o(out.permute(0, 3, 1, 2)), attn.permute(0, 4, 1, 2, 3)


class FusedCrossAttention(nn.Module):
    """A trained CrossAttention in its inference form: the same outputs (to float rounding), with the key and
    value projections moved from the K tokens to the one query.

    Per head j, score_k = q_j . (Wk_j t_k + bk_j) / sqrt(dh) = (Wk_j^T q_j / sqrt(dh)) . t_k + c_j: one
    projection of the query instead of one per token; c_j is the same for every token, so only the null
    token's score moves (by -c_j). The values likewise: sum_k a_k (Wv_j t_k + bv_j) + a_null null_v_j =
    Wv_j (sum_k a_k t_k) + bv_j + a_null (null_v_j - bv_j), and the output projection folds into Wv and the
    null value. ONNX Runtime on a CPU runs the bundled model's tiles about a quarter faster this way (densify
    export; README, "Benchmark").
    """

    def __init__(self, trained: CrossAttention):
        super().__init__()
        h, dh = trained.h, trained.dh
        d, s = h * dh, 1.0 / math.sqrt(dh)
        self.h, self.d = h, d
        with torch.no_grad():
            wq, bq = trained.q.weight[:, :, 0, 0], trained.q.bias
            wk, bk, wv, bv = trained.k.weight, trained.k.bias, trained.v.weight, trained.v.bias
            wo, bo = trained.o.weight[:, :, 0, 0], trained.o.bias
            heads = [slice(j * dh, (j + 1) * dh) for j in range(h)]
            null_k, null_v = trained.null_k - bk, trained.null_v - bv

            def query_side(w: torch.Tensor) -> torch.Tensor:  # the query projection's weight or bias, carried
                # into token space per head (h * d rows), then onto the null key (h rows)
                onto_null = torch.stack([s * null_k[j] @ w[j] for j in heads])
                return torch.cat([s * wk[j].T @ w[j] for j in heads] + [onto_null])

            qk_w, qk_b = query_side(wq), query_side(bq)  # one 1x1 convolution of the query
            # and one of the attended tokens (h * d channels) and the null token's weights (h): the output
            null_o = torch.stack([wo[:, j] @ null_v[j] for j in heads], 1)
            out_w = torch.cat([wo[:, j] @ wv[j] for j in heads] + [null_o], 1)
            out_b = wo @ bv + bo
        like = {"dtype": wq.dtype, "device": wq.device}
        self.qk = nn.Conv2d(d, h * d + h, 1, **like)
        self.qk.weight.data.copy_(qk_w[:, :, None, None])
        self.qk.bias.data.copy_(qk_b)
        self.out = nn.Conv2d(h * d + h, d, 1, **like)
        self.out.weight.data.copy_(out_w[:, :, None, None])
        self.out.bias.data.copy_(out_b)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """As CrossAttention.forward."""
        k, h, d = tokens.shape[1], self.h, self.d
        z = self.qk(query)
        qk = z[:, :h * d].unflatten(1, (h, d))  # n H d h w
        scores = (tokens.unsqueeze(2) * qk.unsqueeze(1)).sum(3)  # n K H h w
        scores = torch.where(valid.unsqueeze(2) > 0.5, scores, torch.full_like(scores, -1e4))
        attn = torch.softmax(torch.cat([scores, z[:, h * d:].unsqueeze(1)], dim=1), dim=1)  # n K+1 H h w
        attended = (attn[:, :k].unsqueeze(3) * tokens.unsqueeze(2)).sum(1)  # n H d h w
        return self.out(torch.cat([attended.flatten(1, 2), attn[:, k]], dim=1)), attn.transpose(1, 2)


def for_inference(model: TemporalGenerator) -> TemporalGenerator:
    """A copy of a trained model in evaluation mode with its attention in the inference form
    (FusedCrossAttention): what densify export writes to ONNX."""
    import copy

    fused = copy.deepcopy(model).eval()
    fused.attn = nn.ModuleList([FusedCrossAttention(a) for a in fused.attn])
    return fused


class TemporalGenerator(nn.Module):
    """The model; forward takes the INPUTS (reflectance, dB, days) and returns mean, logvar."""

    def __init__(self, d: int = 32, heads: int = 2, layers: int = 2,
                 s2_mean: list[float] | None = None, s2_std: list[float] | None = None,
                 s1_mean: list[float] | None = None, s1_std: list[float] | None = None,
                 cloud_context: bool = False, s1_change: bool = False, obs_s1_change: bool = False,
                 s1_span: bool = False, dropout: float = 0.0):
        super().__init__()
        if obs_s1_change and not s1_change:
            raise ValueError("obs_s1_change needs s1_change (the inputs are positional: s1_change comes first)")
        if s1_span and not s1_change:
            raise ValueError("s1_span needs s1_change (it is that input's 6-channel form)")
        self.config = {"d": d, "heads": heads, "layers": layers, "cloud_context": cloud_context,
                       "s1_change": s1_change, "obs_s1_change": obs_s1_change}
        if s1_span:  # only then, so the configs of models built without it stay as they were
            self.config["s1_span"] = True
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout {dropout} must be in [0, 1)")
        if dropout > 0:  # likewise
            self.config["dropout"] = float(dropout)
        self.drop = nn.Dropout(dropout)  # on each layer's attention and MLP branches, in training only
        self.cloud_context, self.use_s1_change, self.use_obs_change = cloud_context, s1_change, obs_s1_change
        self.use_s1_span = s1_span
        self.haze: dict | None = None  # haze screen of its inputs (core/haze.py), set from its config
        self.s1_guided: dict | None = None  # dataset.model_inputs()' `guided` (field-scale S1), set from its config
        self.register_buffer("s2_mean", torch.tensor(s2_mean or [0.1] * N_S2).view(1, 1, N_S2, 1, 1))
        self.register_buffer("s2_std", torch.tensor(s2_std or [0.1] * N_S2).view(1, 1, N_S2, 1, 1))
        self.register_buffer("s1_mean", torch.tensor(s1_mean or [-12.0, -19.0, 7.0]).view(1, 1, 3, 1, 1))
        self.register_buffer("s1_std", torch.tensor(s1_std or [3.0, 3.0, 3.0]).view(1, 1, 3, 1, 1))
        self.enc_s2 = ObsEncoder(N_S2 + 1 + (len(CLOUD_WINDOWS) if cloud_context else 0)
                                 + (N_CHANGE if obs_s1_change else 0), d)
        self.enc_s1 = ObsEncoder(3 + 1, d)
        self.time_s2 = nn.Linear(N_TIME, d)
        self.time_s1 = nn.Linear(N_TIME, d)
        # query: linear baseline (10), previous and next clear values (20), base_info (5), [s1_change (3 or 6)]
        # + time
        c_q = 3 * N_S2 + N_INFO + (N_CHANGE * (2 if s1_span else 1) if s1_change else 0)
        self.enc_q = nn.Sequential(nn.Conv2d(c_q, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, d, 1))
        self.time_q = nn.Linear(N_TIME, d)
        self.attn = nn.ModuleList([CrossAttention(d, heads) for _ in range(layers)])
        self.mlp = nn.ModuleList([nn.Sequential(nn.Conv2d(d, 2 * d, 1), nn.GELU(), nn.Conv2d(2 * d, d, 1))
                                  for _ in range(layers)])
        self.head = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, (2 + N_BLEND) * N_S2, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, s2: torch.Tensor, s2_valid: torch.Tensor, s2_dt: torch.Tensor,
                s1: torch.Tensor, s1_valid: torch.Tensor, s1_dt: torch.Tensor,
                base: torch.Tensor, near: torch.Tensor, base_info: torch.Tensor, target_doy: torch.Tensor,
                s1_change: torch.Tensor | None = None, obs_s1_change: torch.Tensor | None = None,
                return_attn: bool = False):
        """s2 (n,K2,10,h,w) reflectance (any value where invalid), s2_valid (n,K2,h,w) 0/1,
        s2_dt (n,K2) obs day - target day; s1 (n,K1,2,h,w) dB, s1_valid, s1_dt likewise;
        base (n,10,h,w) linear baseline reflectance; near (n,20,h,w) previous and next clear
        reflectance (0 where none); base_info (n,5,h,w): baseline valid (0/1), days to the previous
        and next clear observation / 100 (capped), previous / next exists (0/1); target_doy (n,);
        s1_change (n,3,h,w) (used by s1_change models only): S1 VV, VH at the target minus S1 interpolated
        between the previous / next clear dates (dB, 0 where unknown), known (0/1), and for s1_span models
        (n,6,h,w) also S1 at the next minus S1 at the previous clear date (dB), known (0/1); obs_s1_change
        (n,K2,3,h,w) (obs_s1_change models only): the same per S2 observation, S1 at the target minus
        S1 at that observation's date, so attention can find the optical observation whose radar looked
        like the target's.

        Returns mean (n,10,h,w) reflectance and logvar (n,10,h,w) of the reflectance, and with
        return_attn the attention weights of each layer (n, heads, K2+K1+1, h, w).
        """
        s2v = s2_valid.unsqueeze(2)
        x2 = torch.where(s2v > 0.5, (s2 - self.s2_mean) / self.s2_std, torch.zeros_like(s2))
        parts = [x2, s2v, clear_fraction(s2v)] if self.cloud_context else [x2, s2v]
        if self.use_obs_change:
            if obs_s1_change is None:
                raise ValueError("this model takes the obs_s1_change input")
            parts.append(torch.cat([obs_s1_change[:, :, :2] / S1_CHANGE_DB, obs_s1_change[:, :, 2:3]], dim=2))
        x2 = torch.cat(parts, dim=2)
        vv, vh = s1[:, :, 0:1], s1[:, :, 1:2]
        s1v = s1_valid.unsqueeze(2)
        x1 = (torch.cat([vv, vh, vv - vh], dim=2) - self.s1_mean) / self.s1_std
        x1 = torch.where(s1v > 0.5, x1, torch.zeros_like(x1))
        x1 = torch.cat([x1, s1v], dim=2)
        doy = target_doy.view(-1, 1)
        t2 = self.time_s2(time_features(s2_dt, doy + s2_dt))  # n K2 d
        t1 = self.time_s1(time_features(s1_dt, doy + s1_dt))
        tok2 = self.enc_s2(x2) + t2.unsqueeze(-1).unsqueeze(-1)
        tok1 = self.enc_s1(x1) + t1.unsqueeze(-1).unsqueeze(-1)
        tokens = torch.cat([tok2, tok1], dim=1)
        valid = torch.cat([s2_valid, s1_valid], dim=1)

        bm, bs = self.s2_mean[:, 0], self.s2_std[:, 0]
        bvalid = base_info[:, 0:1]
        bn = torch.where(bvalid > 0.5, (base - bm) / bs, torch.zeros_like(base))
        hp, hn = base_info[:, 3:4], base_info[:, 4:5]
        pn = torch.where(hp > 0.5, (near[:, :N_S2] - bm) / bs, torch.zeros_like(base))
        nn_ = torch.where(hn > 0.5, (near[:, N_S2:] - bm) / bs, torch.zeros_like(base))
        tq = self.time_q(time_features(torch.zeros_like(target_doy), target_doy))  # n d
        qin = [bn, pn, nn_, base_info]
        if self.use_s1_change:
            if s1_change is None:
                raise ValueError("this model takes the s1_change input")
            want = N_CHANGE * (2 if self.use_s1_span else 1)
            if s1_change.shape[1] != want:
                raise ValueError(f"this model takes s1_change with {want} channels, got {s1_change.shape[1]}")
            scaled = [s1_change[:, :2] / S1_CHANGE_DB, s1_change[:, 2:3]]
            if self.use_s1_span:  # the span between the clear dates, scaled alike
                scaled += [s1_change[:, 3:5] / S1_CHANGE_DB, s1_change[:, 5:6]]
            qin.append(torch.cat(scaled, dim=1))
        q = self.enc_q(torch.cat(qin, dim=1)) + tq.unsqueeze(-1).unsqueeze(-1)
        maps = []
        for attn, mlp in zip(self.attn, self.mlp, strict=True):
            a, w = attn(q, tokens, valid)
            q = q + self.drop(a)
            q = q + self.drop(mlp(q))
            maps.append(w)
        out = self.head(q)
        logits = out[:, 2 * N_S2:].unflatten(1, (N_BLEND, N_S2))  # n 3 B h w
        avail = torch.stack([bvalid, hp, hn], dim=1)  # n 3 1 h w
        logits = logits * avail - (1.0 - avail) * 1e4
        blend = (torch.softmax(logits, dim=1) * torch.stack([bn, pn, nn_], dim=1)).sum(1)
        mean_n = blend + out[:, :N_S2]
        logvar_n = torch.clamp(out[:, N_S2:2 * N_S2], -9.0, 4.0)
        mean = mean_n * bs + bm
        logvar = logvar_n + 2.0 * torch.log(bs)
        if return_attn:
            return mean, logvar, maps
        return mean, logvar


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 scale: torch.Tensor, beta: float = 0.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Gaussian NLL over valid pixels, in per-band normalised units (scale: (1,B,1,1) std);
    `weights` (B,): each band's term weighted (band_weights()), else all bands alike.

    beta > 0: the beta-NLL of Seitzer et al. (ICLR 2022), each pixel's term weighted by its
    (detached) variance ** beta, so pixels predicted as uncertain still pull the mean (beta = 1
    gives the mean the gradient of the squared error)."""
    target = torch.where(valid.unsqueeze(1), target, mean.detach())
    z = (target - mean) / scale
    lv = logvar - 2.0 * torch.log(scale)
    nll = 0.5 * (lv + z * z * torch.exp(-lv))
    if beta > 0:
        nll = nll * torch.exp(beta * lv.detach())
    if weights is not None:
        nll = nll * weights.view(1, -1, 1, 1)
    m = valid.unsqueeze(1).to(nll.dtype)
    return (nll * m).sum() / (m.sum() * nll.shape[1]).clamp_min(1.0)


BAND_WEIGHTS = ("equal", "variance")


def band_weights(kind: str, s2_std: torch.Tensor) -> torch.Tensor | None:
    """Loss weights per band: None for "equal"; for "variance", each band's std squared over their mean,
    so the loss weighs the bands as the reflectance MSE (and the protocol's PSNR) does."""
    if kind == "equal":
        return None
    if kind != "variance":
        raise ValueError(f"band weights {kind!r}: one of {', '.join(BAND_WEIGHTS)}")
    var = s2_std.reshape(-1).float() ** 2
    return var / var.mean()
