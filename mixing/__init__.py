"""neuromix.mixing"""
