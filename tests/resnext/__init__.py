"""Tests of resnext/: specs, the built model, complexity counts and the template generator."""
