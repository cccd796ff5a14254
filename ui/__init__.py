"""neuromix.ui"""
