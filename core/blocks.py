"""Shared neural building blocks: log-mel front end, track encoder, set aggregator, FiLM, TCN.

All blocks are small and CPU-friendly, use no batch statistics (so a batch gives
the same result as its items one by one) and take the conventions of the project:
audio ``(batch, channels, samples)``, track sets ``(batch, tracks, dim)`` with a
bool mask ``(batch, tracks)`` that is True for real tracks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio.functional as AF
from torch import Tensor, nn

__all__ = ["LogMelFrontEnd", "TrackEncoder", "SetAggregator", "FiLM", "TCN", "masked_mean"]


class LogMelFrontEnd(nn.Module):
    """Log-mel spectrogram of every channel, for a fixed sample rate.

    STFT with a periodic Hann window, centred frames (zero padding), magnitude
    normalised by the window sum (a full-scale sine peaks near 0.5 in its bin),
    power summed into ``n_mels`` HTK-mel triangles (``torchaudio.functional.melscale_fbanks``)
    and ``log(power + floor)``. The window and filterbank are non-persistent buffers
    (rebuilt from the arguments, not stored in checkpoints). Differentiable.

    Args:
        sample_rate: rate in Hz the module accepts (``forward`` refuses another).
        n_fft: FFT size in samples.
        hop: hop size in samples.
        n_mels: number of mel bands.
        f_min: lowest mel edge in Hz.
        f_max: highest mel edge in Hz (``None``: ``sample_rate / 2``).
        floor: power floor inside the log (1e-8 = -80 dB).
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop: int = 256,
        n_mels: int = 64,
        f_min: float = 20.0,
        f_max: float | None = None,
        floor: float = 1e-8,
    ) -> None:
        super().__init__()
        if sample_rate <= 0 or n_fft <= 0 or hop <= 0 or n_mels <= 0:
            raise ValueError("sample_rate, n_fft, hop and n_mels must be positive")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop = int(hop)
        self.n_mels = int(n_mels)
        self.floor = float(floor)
        f_max = sample_rate / 2.0 if f_max is None else float(f_max)
        window = torch.hann_window(self.n_fft, periodic=True)
        fbank = AF.melscale_fbanks(self.n_fft // 2 + 1, float(f_min), f_max, self.n_mels, self.sample_rate)
        self.register_buffer("window", window / window.sum(), persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)  # (freqs, n_mels)

    def num_frames(self, samples: int) -> int:
        """Number of frames ``forward`` returns for ``samples`` input samples."""
        return samples // self.hop + 1

    def forward(self, x: Tensor, sample_rate: int) -> Tensor:
        """Compute log-mel features.

        Args:
            x: ``(batch, channels, samples)`` audio, full scale 1.0.
            sample_rate: rate of ``x`` in Hz; must equal the module's.

        Returns:
            ``(batch, channels, n_mels, frames)`` natural-log mel power,
            ``frames = samples // hop + 1``.

        Raises:
            ValueError: wrong rank or a sample rate other than the module's.
        """
        if int(sample_rate) != self.sample_rate:
            raise ValueError(
                f"{type(self).__name__} was built for {self.sample_rate} Hz but got audio at "
                f"{sample_rate} Hz; resample the input first"
            )
        if x.ndim != 3:
            raise ValueError(f"x must be (batch, channels, samples), got shape {tuple(x.shape)}")
        batch, channels, samples = x.shape
        flat = x.reshape(batch * channels, samples)
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window.to(flat.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (batch*channels, freqs, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.einsum("nft,fm->nmt", power, self.fbank.to(power.dtype))
        return torch.log(mel + self.floor).reshape(batch, channels, self.n_mels, -1)


class TrackEncoder(nn.Module):
    """Embed one stereo track into a vector, from the log-mel of its mid and side.

    ``mid = (L + R) / 2`` and ``side = (L - R) / 2`` go through :class:`LogMelFrontEnd`;
    the two spectrograms are stacked as ``2 * n_mels`` input channels of a 1-D conv
    stack over time (a 1x1 input projection, then residual blocks of a dilated
    kernel-3 conv, GELU and a 1x1 conv), pooled by mean and max over time, and
    projected to ``embed_dim``. No normalisation layer: absolute level (which matters
    for mixing) reaches the embedding, and items never interact. Differentiable.
    About 110k parameters with the defaults.

    Args:
        sample_rate: rate in Hz the encoder accepts.
        channels: width of the conv stack.
        embed_dim: size of the output embedding.
        n_fft, hop, n_mels: front-end settings.
        dilations: dilation of each residual block's conv.
    """

    # fixed affine map of log-mel values (about -18.4 for silence .. 0 for loud bins) to ~[-1, 1]
    _LOG_OFFSET = 9.0
    _LOG_SCALE = 1.0 / 9.0

    def __init__(
        self,
        sample_rate: int,
        channels: int = 64,
        embed_dim: int = 128,
        *,
        n_fft: int = 1024,
        hop: int = 256,
        n_mels: int = 64,
        dilations: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.embed_dim = int(embed_dim)
        self.frontend = LogMelFrontEnd(sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels)
        self.inp = nn.Conv1d(2 * n_mels, channels, kernel_size=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels, channels, kernel_size=3, dilation=d, padding=d),
                nn.GELU(),
                nn.Conv1d(channels, channels, kernel_size=1),
            )
            for d in dilations
        )
        self.out = nn.Sequential(
            nn.Linear(2 * channels, embed_dim),
            nn.GELU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, x: Tensor, sample_rate: int) -> Tensor:
        """Encode tracks.

        Args:
            x: ``(batch*tracks, 2, samples)`` stereo tracks (fold tracks into the batch
                with ``rearrange(x, "b t c n -> (b t) c n")``; a mono track should be
                made dual mono first).
            sample_rate: rate of ``x`` in Hz; must equal the encoder's.

        Returns:
            ``(batch*tracks, embed_dim)`` embeddings.
        """
        if x.ndim != 3 or x.shape[1] != 2:
            raise ValueError(f"x must be (batch*tracks, 2, samples), got shape {tuple(x.shape)}")
        mid = 0.5 * (x[:, 0] + x[:, 1])
        side = 0.5 * (x[:, 0] - x[:, 1])
        feats = self.frontend(torch.stack([mid, side], dim=1), sample_rate)  # (n, 2, mels, frames)
        feats = (feats + self._LOG_OFFSET) * self._LOG_SCALE
        h = self.inp(feats.flatten(1, 2))  # (n, channels, frames)
        for block in self.blocks:
            h = h + block(h)
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)  # (n, 2*channels)
        return self.out(pooled)


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of the valid tokens: ``(batch, tokens, dim), (batch, tokens) bool -> (batch, dim)``.

    Differentiable. An item with no valid token gives zeros.
    """
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class SetAggregator(nn.Module):
    """Transformer encoder over a set of track tokens, with a pooled global context.

    A stack of pre-norm ``nn.TransformerEncoderLayer`` (batch first, no positional
    encoding) attends across the valid tokens only (``src_key_padding_mask = ~mask``).
    Hence the token outputs are permutation equivariant, the context (masked mean of
    the outputs) is permutation invariant, and padding tokens change nothing. The
    caller may append extra tokens (e.g. a reference mix's) with mask True.
    Differentiable. A set transformer without inducing points (Vaswani et al. 2017;
    Lee et al. 2019, "Set Transformer"), pooled Deep-Sets style (Zaheer et al. 2017).

    Args:
        embed_dim: token size.
        heads: attention heads (must divide ``embed_dim``).
        layers: number of encoder layers.
        dropout: dropout inside the layers (active in train mode only).
        ff_mult: feed-forward width as a multiple of ``embed_dim``.
    """

    def __init__(
        self, embed_dim: int, heads: int = 4, layers: int = 2, dropout: float = 0.0, ff_mult: int = 2
    ) -> None:
        super().__init__()
        if embed_dim % heads != 0:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by heads={heads}")
        layer = nn.TransformerEncoderLayer(
            d_model=embed_dim,
            nhead=heads,
            dim_feedforward=ff_mult * embed_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Let tokens attend to each other.

        Args:
            tokens: ``(batch, tokens, embed_dim)``.
            mask: ``(batch, tokens)`` bool, True for real tokens; every item needs one.

        Returns:
            ``(out, context)``: ``out`` ``(batch, tokens, embed_dim)`` with zeros at padding
            positions, ``context`` ``(batch, embed_dim)`` the masked mean of ``out``.

        Raises:
            ValueError: shapes disagree or an item has no valid token.
        """
        if tokens.ndim != 3 or mask.shape != tokens.shape[:2]:
            raise ValueError(
                f"tokens must be (batch, tokens, dim) and mask (batch, tokens); got "
                f"{tuple(tokens.shape)} and {tuple(mask.shape)}"
            )
        mask = mask.to(torch.bool)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every batch item needs at least one valid (mask True) token")
        out = self.norm(self.encoder(tokens, src_key_padding_mask=~mask))
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return out, masked_mean(out, mask)


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): ``y = gamma * x + beta``.

    ``gamma = 1 + W_g c + b_g`` and ``beta = W_b c + b_b`` come from one linear map
    of the conditioning vector ``c``, so zero weights and biases give the identity.
    Differentiable.

    Args:
        cond_dim: size of the conditioning vector.
        channels: number of feature channels modulated.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def params(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(gamma, beta)``, each ``(batch, channels)``, for ``cond`` ``(batch, cond_dim)``."""
        delta_gamma, beta = self.proj(cond).chunk(2, dim=-1)
        return 1.0 + delta_gamma, beta

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Modulate ``x`` ``(batch, channels, time)`` by ``cond`` ``(batch, cond_dim)``; same shape out."""
        gamma, beta = self.params(cond)
        return x * gamma.unsqueeze(-1) + beta.unsqueeze(-1)


class _TCNBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, dilation: int, cond_dim: int | None, causal: bool
    ) -> None:
        super().__init__()
        total = (kernel - 1) * dilation
        self.pad = (total, 0) if causal else (total - total // 2, total // 2)
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size=kernel, dilation=dilation)
        self.film = FiLM(cond_dim, out_ch) if cond_dim else None
        self.act = nn.PReLU(out_ch)
        self.res = nn.Conv1d(in_ch, out_ch, kernel_size=1, bias=False) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = self.conv(nn.functional.pad(x, self.pad))
        if self.film is not None:
            if cond is None:
                raise ValueError("this TCN is conditioned (cond_dim set); pass cond (batch, cond_dim)")
            h = self.film(h, cond)
        return self.act(h) + self.res(x)


class TCN(nn.Module):
    """Temporal convolutional network with FiLM conditioning (Steinmetz & Reiss 2021).

    Residual blocks of a dilated conv, FiLM from the conditioning vector, and PReLU,
    then a 1x1 output conv. Every block pads its input ("same" length), either
    causally (all padding on the left, output ``t`` sees inputs ``<= t``) or centred
    (exactly for odd kernels; with an even kernel a block's odd padding sample goes
    on the left).
    Receptive field ``1 + (kernel - 1) * sum(dilations)`` samples. Differentiable.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        channels: hidden width.
        kernel: conv kernel size.
        dilations: dilation of each block.
        cond_dim: size of the conditioning vector (``None``: no FiLM, unconditioned).
        causal: causal padding if True, centred if False.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        channels: int = 32,
        kernel: int = 13,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        cond_dim: int | None = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if kernel < 1 or not dilations or any(d < 1 for d in dilations):
            raise ValueError("kernel must be >= 1 and dilations a non-empty sequence of ints >= 1")
        self.kernel = int(kernel)
        self.dilations = tuple(int(d) for d in dilations)
        self.causal = bool(causal)
        self.cond_dim = cond_dim
        self.blocks = nn.ModuleList(
            _TCNBlock(in_ch if i == 0 else channels, channels, kernel, d, cond_dim, causal)
            for i, d in enumerate(self.dilations)
        )
        self.out = nn.Conv1d(channels, out_ch, kernel_size=1)

    @property
    def receptive_field(self) -> int:
        """Number of input samples one output sample depends on."""
        return 1 + (self.kernel - 1) * sum(self.dilations)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Process a signal.

        Args:
            x: ``(batch, in_ch, samples)``.
            cond: ``(batch, cond_dim)`` conditioning, required when ``cond_dim`` is set.

        Returns:
            ``(batch, out_ch, samples)``.
        """
        if x.ndim != 3:
            raise ValueError(f"x must be (batch, channels, samples), got shape {tuple(x.shape)}")
        h = x
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h)
