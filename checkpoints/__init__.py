"""neuromix.checkpoints"""
