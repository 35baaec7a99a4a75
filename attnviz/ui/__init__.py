"""The Streamlit app's logic, kept out of ``app.py`` so it can be tested without a browser.

``state``: what is computed once and looked up (models, analyses, decoded images);
``views``: analyses to captioned pictures and tables; ``normalization``: colour scales;
``catalog``: the model picker's view of the zoo; ``learn``: formulas and explanations;
``bundle``: ZIP and CSV downloads; ``feedback``: error display; ``remember``: tab settings
that outlive the lazy tabs.
"""
