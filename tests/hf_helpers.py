"""Tiny random transformers snapshots built offline (save_pretrained into a folder), for the hf embedder tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ("a", "the", "dog", "barking", "bird", "singing", "engine", "humming", "water", "dripping", "of", "sound",
         "bell", "ringing", "click", "clicking")


def tiny_ast(folder: Path, *, seed: int = 0) -> Path:
    """AST with 16 mel bins and 100-frame (1 s) windows."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, num_mel_bins=16,
                    max_length=100, frequency_stride=10, time_stride=10, patch_size=16)
    ASTModel(cfg).eval().save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=16, max_length=100).save_pretrained(folder)
    return folder


def tiny_wav2vec2(folder: Path, *, seed: int = 0, model_type: str = "wav2vec2") -> Path:
    """A two-convolution wav2vec2 (or HuBERT) encoder: 20-sample hop, 1 transformer layer."""
    import torch
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Model)

    torch.manual_seed(seed)
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(16, 16),
              conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = HubertModel(HubertConfig(**kw)) if model_type == "hubert" else Wav2Vec2Model(Wav2Vec2Config(**kw))
    model.eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def tiny_tokenizer():
    """A word-level tokenizer over :data:`WORDS` (ids: <s> 0, <pad> 1, </s> 2, <unk> 3, then the words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=32)


def tiny_clap_model(*, seed: int = 0):
    """A random CLAP (HTSAT audio tower on 16 mel bins, 1 s at 16 kHz; 1-layer text encoder), 16-d shared space."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    torch.manual_seed(seed)
    audio = ClapAudioConfig(window_size=4, num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=(4, 4),
                            depths=[1, 1], num_heads=[1, 2], hidden_size=16, patch_embeds_hidden_size=8,
                            projection_dim=16, enable_fusion=False, num_classes=4)
    text = ClapTextConfig(vocab_size=4 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=20, max_position_embeddings=40, projection_dim=16)
    return ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)).eval()


def clap_feature_extractor():
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=1,
                                fft_window_size=400, frequency_min=50, frequency_max=8000)


def save_clap(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    clap_feature_extractor().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def tiny_clap(folder: Path, *, seed: int = 0) -> Path:
    return save_clap(tiny_clap_model(seed=seed), folder)
