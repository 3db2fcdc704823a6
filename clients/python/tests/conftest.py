import sys
from pathlib import Path

# clients/python on sys.path: rainbow_backend and rainbow_django import as installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
