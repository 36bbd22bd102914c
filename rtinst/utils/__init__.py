"""Utilities shared by rtinst and the methods."""
