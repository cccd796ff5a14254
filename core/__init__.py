"""neuromix.core"""
