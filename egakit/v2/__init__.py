"""EGA-V2 semantic ids (EGA-V2 §4.1.2, Eq. 10-12; docs/design.md §9), independent of the world.

- :class:`RQVAE` / :class:`RQVAEConfig` — encoder MLP, C x W residual quantisation with the
  straight-through estimator, decoder MLP; loss = reconstruction + codebook + β · commitment;
  k-means codebook initialisation and dead-code reset.
- :func:`train_tokenizer` — a plain-torch training loop over an item-embedding table.
- :class:`SemanticIds` — unique (c_1..c_C, s) tuples with a collision suffix, item <-> id tables
  that save beside a checkpoint and load with ``weights_only=True``.
- :class:`PrefixTrie` — vectorised allowed-next-token masks over the id tuples;
  :func:`constrained_beam_search` / :func:`constrained_greedy` only return existing items.
- :func:`tokenizer_report` — codebook usage, perplexity, collision rate, reconstruction error.
"""
from egakit.v2.codebook_metrics import TokenizerReport, codes_report, collision_rate, level_perplexity, level_usage, tokenizer_report
from egakit.v2.constrained_decoding import BeamSearchResult, constrained_beam_search, constrained_greedy
from egakit.v2.kmeans import kmeans
from egakit.v2.rqvae import RQVAE, RQVAEConfig, RQVAEOutput, ResidualQuantizer
from egakit.v2.semantic_ids import SemanticIds, UnknownSemanticIdError, collision_suffix
from egakit.v2.tokenizer_training import TokenizerTrainingConfig, TokenizerTrainingHistory, train_tokenizer
from egakit.v2.trie import PrefixTrie

__all__ = [
    "BeamSearchResult",
    "PrefixTrie",
    "RQVAE",
    "RQVAEConfig",
    "RQVAEOutput",
    "ResidualQuantizer",
    "SemanticIds",
    "TokenizerReport",
    "TokenizerTrainingConfig",
    "TokenizerTrainingHistory",
    "UnknownSemanticIdError",
    "codes_report",
    "collision_rate",
    "collision_suffix",
    "constrained_beam_search",
    "constrained_greedy",
    "kmeans",
    "level_perplexity",
    "level_usage",
    "tokenizer_report",
    "train_tokenizer",
]
