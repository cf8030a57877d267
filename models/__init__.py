"""SCAM networks (Dufour, Picard, Kalogeiton, ECCV 2022), shared by training and export."""
from .attention import (ATTENTION_PATHS, MASKED_LOGIT, SATBlock, SemanticCrossAttention, latents_attend_pixels,
                        pixels_attend_latents)
from .checkpoint import (FORMAT_VERSION, CheckpointError, load_checkpoint, read_checkpoint,
                         save_checkpoint)
from .config import PRESETS, ModelConfig
from .discriminator import PatchGANDiscriminator
from .encoder import SATEncoder
from .generator import NOISE_MODES, SCAMGenerator, SCAMOperation
from .layout import assignment_matrix, latent_layout, one_hot
from .parsing import ParserNet, ParserNetConfig
from .posemb import sinusoidal_table

__all__ = [
    "MASKED_LOGIT", "SATBlock", "SemanticCrossAttention", "latents_attend_pixels",
    "pixels_attend_latents", "FORMAT_VERSION", "CheckpointError",
    "load_checkpoint", "read_checkpoint", "save_checkpoint", "PRESETS", "ModelConfig",
    "PatchGANDiscriminator", "SATEncoder", "ATTENTION_PATHS", "NOISE_MODES", "SCAMGenerator", "SCAMOperation",
    "assignment_matrix", "latent_layout", "one_hot", "sinusoidal_table", "ParserNet", "ParserNetConfig",
]
