"""WSDEC (Duan et al., NeurIPS 2018): caption generator, sentence localizers, inference helpers."""
from models.wsdec.caption_generator import CaptionGenerator, caption_loss
from models.wsdec.factory import build_models_from_config, wsdec_config_from_params
from models.wsdec.regressor_localizer import RegressorLocalizer
from models.wsdec.sentence_localizer import SentenceLocalizer

__all__ = ['CaptionGenerator', 'caption_loss', 'SentenceLocalizer', 'RegressorLocalizer',
           'build_models_from_config', 'wsdec_config_from_params']
