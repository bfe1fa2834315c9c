"""tunewise launcher: plan -> run directory -> process -> TRL trainer -> summary.

Heavy libraries are imported inside the functions that train, never at module level.
"""
