"""The human-in-the-loop console behind `striata intervene`: a browser page to watch, take over and label the
envs of a running job, through the intervention port of actors/INTERVENTION.md.

``link`` speaks that protocol (and nothing else, so any process serving the port can be driven: a
`striata train` actor today, a deployed robot later), ``discovery`` finds the ports of a job, ``hub``
enforces the control rules and records sessions, ``app`` serves the page and its websocket, and
``spacemouse`` reads a 3Dconnexion device on the server when one is plugged in.
"""
