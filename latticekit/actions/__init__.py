"""placeholder while the package is written"""
