"""neuromix.synthesis"""
