"""Sphinx configuration of the course website (`make site`, see utils/site.py).

utils.site stages the sources in build/site-src (with a copy of this file) and builds them
with warnings as errors; notebooks are rendered from their stored outputs, never executed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # build/site-src/conf.py -> the checkout

from utils._config import REPOSITORY  # noqa: E402
from utils.labs import git_ref  # noqa: E402

project = "Deep learning, lab by lab"
author = "the dl-labs authors"
copyright = "the dl-labs authors, MIT licence"
extensions = ["myst_nb", "sphinx_design"]
myst_enable_extensions = ["dollarmath", "amsmath", "attrs_inline", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"          # the stored outputs are the content
smartquotes = False                # text exactly as in the notebooks and the README
nb_merge_streams = True
exclude_patterns = ["downloads/**", "_static/**", "conf.py"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_theme_options = {
    "repository_url": f"https://github.com/{REPOSITORY}",
    "repository_branch": git_ref(),
    "use_repository_button": True,
    "use_download_button": False,  # the launch buttons offer both notebooks (the staged page is neither)
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": {"**": ["page-toc"], "index": []},  # the home page's table gets the width
}
html_context = {"default_mode": "light"}   # no stored preference yet: light, without a console error
html_favicon = "_static/favicon.svg"
html_copy_source = False           # the staged sources are not what a reader should download
# MathJax from the site itself: the pages render their maths offline
mathjax_path = "mathjax/tex-chtml.js"
