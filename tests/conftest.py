"""Shared test set-up: tests/ on sys.path so helper modules (workloads, tir_interp, ...) import."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
