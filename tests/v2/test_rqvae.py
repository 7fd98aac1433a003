"""RQ-VAE tokenizer (EGA-V2 Eq. 10-12): losses, k-means initialisation, dead-code reset, training."""
import pytest
import torch

from egakit.v2 import (
    RQVAE,
    RQVAEConfig,
    ResidualQuantizer,
    SemanticIds,
    TokenizerTrainingConfig,
    kmeans,
    level_perplexity,
    level_usage,
    tokenizer_report,
    train_tokenizer,
)
from v2_helpers import CODEBOOK_SIZE, N_CLUSTERS, N_LEVELS, gaussian_mixture, small_config


def purity(codes: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of items whose code's majority cluster is their own cluster."""
    majority = sum(int(torch.bincount(labels[codes == c]).max()) for c in codes.unique())
    return majority / labels.numel()


def test_kmeans_init_places_one_code_on_each_cluster():
    data = gaussian_mixture(n=800, k=N_CLUSTERS, dim=4, seed=1)
    quantizer = ResidualQuantizer(2, N_CLUSTERS, 4, kmeans_iters=10)
    quantizer.initialise(data.x)
    assert bool(quantizer.initialised)
    level1 = quantizer.codebooks[0].detach()
    code_to_centre = torch.cdist(level1, data.centres)
    # every code sits on a cluster centre (noise 0.5 => centroid error ~ 0.5 / sqrt(100)) ...
    assert code_to_centre.min(dim=1).values.max() < 0.3
    # ... and every cluster has its own code
    assert code_to_centre.argmin(dim=1).unique().numel() == N_CLUSTERS
    # level 2 is fitted on level-1 residuals: it sits near zero, on the scale of the noise
    assert quantizer.codebooks[1].detach().norm(dim=1).max() < 3.0


def test_kmeans_with_fewer_points_than_codes_fills_every_code():
    x = torch.randn(5, 3)
    centroids = kmeans(x, 8, iterations=3, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (8, 3) and torch.isfinite(centroids).all()
    assert torch.cdist(centroids, x).min(dim=1).values.max() < 0.1  # all on (or next to) data points


def test_loss_is_reconstruction_plus_codebook_plus_beta_commitment():
    torch.manual_seed(0)
    x = gaussian_mixture(n=128).x
    model = RQVAE(small_config(beta=0.25))
    model.train()
    out = model(x)
    assert out.commitment_loss.item() > 0
    expected = out.reconstruction_loss + out.codebook_loss + 0.25 * out.commitment_loss
    torch.testing.assert_close(out.loss, expected)
    assert out.codes.shape == (128, N_LEVELS) and out.reconstruction.shape == x.shape


def test_commitment_loss_has_gradient_to_the_encoder():
    torch.manual_seed(0)
    x = gaussian_mixture(n=128).x
    model = RQVAE(small_config())
    model.train()
    out = model(x)
    encoder_params = list(model.encoder.parameters())
    commit_grads = torch.autograd.grad(out.commitment_loss, encoder_params, retain_graph=True)
    assert sum(g.abs().sum() for g in commit_grads) > 0
    # the commitment term is in the total loss with weight beta: the encoder's gradient of the
    # total minus that of the other two terms is exactly beta times the commitment gradient
    total = torch.autograd.grad(out.loss, encoder_params, retain_graph=True)
    rest = torch.autograd.grad(out.reconstruction_loss + out.codebook_loss, encoder_params, retain_graph=True)
    for t, r, c in zip(total, rest, commit_grads):
        torch.testing.assert_close(t - r, model.config.beta * c)
    # the codebook term trains the codes only; the reconstruction reaches the encoder (straight-through)
    cb_grads = torch.autograd.grad(out.codebook_loss, [model.quantizer.codebooks, *encoder_params], allow_unused=True, retain_graph=True)
    assert cb_grads[0].abs().sum() > 0 and all(g is None or g.abs().sum() == 0 for g in cb_grads[1:])
    recon_grads = torch.autograd.grad(out.reconstruction_loss, encoder_params)
    assert sum(g.abs().sum() for g in recon_grads) > 0


def test_dead_codes_are_reset_after_a_collapse():
    data = gaussian_mixture(n=512, dim=4)
    quantizer = ResidualQuantizer(1, CODEBOOK_SIZE, 4, dead_code_steps=3)
    quantizer.initialise(data.x)
    with torch.no_grad():  # collapse: every code but code 0 far away from the data
        quantizer.codebooks[0, 1:] = 1e3
    quantizer.eval()
    usage_collapsed = float(level_usage(quantizer(data.x).codes, CODEBOOK_SIZE)[0])
    assert usage_collapsed == 1 / CODEBOOK_SIZE
    quantizer.train()
    resets = [quantizer(batch).n_reset for batch in data.x.split(128)[:3]]
    assert resets == [0, 0, CODEBOOK_SIZE - 1]
    quantizer.eval()
    usage_after = float(level_usage(quantizer(data.x).codes, CODEBOOK_SIZE)[0])
    assert usage_after >= 0.5 and usage_after > usage_collapsed
    assert quantizer.steps_unused.max() < 3


def test_dead_code_reset_can_be_turned_off():
    data = gaussian_mixture(n=256, dim=4)
    quantizer = ResidualQuantizer(1, CODEBOOK_SIZE, 4, dead_code_steps=0)
    quantizer.initialise(data.x)
    with torch.no_grad():
        quantizer.codebooks[0, 1:] = 1e3
    assert all(quantizer(data.x).n_reset == 0 for _ in range(3))


def test_training_lowers_the_reconstruction_loss(trained_tokenizer):
    recon = trained_tokenizer.history.reconstruction_loss
    first, last = sum(recon[:5]) / 5, sum(recon[-20:]) / 20
    assert last < 0.1 * first, (first, last)


def test_level1_codes_separate_the_clusters(trained_tokenizer):
    model, data = trained_tokenizer.model, trained_tokenizer.mixture
    codes = model.tokenize(data.x)
    assert codes.shape == (data.x.shape[0], N_LEVELS)
    assert purity(codes[:, 0], data.labels) >= 0.95


def test_report_of_a_trained_tokenizer(trained_tokenizer):
    model, data = trained_tokenizer.model, trained_tokenizer.mixture
    report = tokenizer_report(model, data.x, batch_size=500)
    assert len(report.usage) == len(report.perplexity) == N_LEVELS
    # level 1 uses at least one code per cluster; perplexity is between 1 and W
    assert report.usage[0] >= N_CLUSTERS / CODEBOOK_SIZE
    assert all(1.0 <= p <= CODEBOOK_SIZE for p in report.perplexity)
    assert report.perplexity[0] >= 0.9 * N_CLUSTERS  # balanced clusters -> ~uniform over >= 8 codes
    ids = SemanticIds.from_codes(model.tokenize(data.x), CODEBOOK_SIZE)
    assert report.collision_rate == pytest.approx(ids.collision_rate)
    assert 0 < report.reconstruction_mse < trained_tokenizer.history.reconstruction_loss[0]
    assert "collision rate" in str(report)


def test_usage_and_perplexity_on_known_codes():
    codes = torch.tensor([[0, 1], [1, 1], [2, 1], [3, 1]])
    torch.testing.assert_close(level_usage(codes, 8), torch.tensor([0.5, 0.125]))
    torch.testing.assert_close(level_perplexity(codes, 8), torch.tensor([4.0, 1.0]))


def test_tokenize_needs_initialised_codebooks():
    model = RQVAE(small_config())
    with pytest.raises(RuntimeError, match="not initialised"):
        model.tokenize(torch.randn(4, model.config.input_dim))


def test_wrong_input_shape_is_named():
    model = RQVAE(small_config())
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        model(torch.randn(4, 7))


@pytest.mark.parametrize("field,value", [("codebook_size", 0), ("beta", -1.0), ("dead_code_steps", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        small_config(**{field: value})


def test_paper_size_defaults():
    config = RQVAEConfig(input_dim=64)
    assert (config.n_levels, config.codebook_size, config.beta) == (3, 1024, 0.25)


def test_progress_bar_and_history(capsys):
    torch.manual_seed(0)
    model = RQVAE(small_config())
    history = train_tokenizer(model, gaussian_mixture(n=64).x, TokenizerTrainingConfig(steps=3, batch_size=32), progress=True)
    assert len(history.loss) == len(history.n_reset) == 3
    assert "RQ-VAE" in capsys.readouterr().err
    assert not model.training
