"""neuromix.core.dsp"""
