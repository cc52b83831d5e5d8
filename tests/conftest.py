import sys
from pathlib import Path

# Lets tests import shared helpers as top-level modules (``from docs import make_pdf``).
sys.path.insert(0, str(Path(__file__).parent))
