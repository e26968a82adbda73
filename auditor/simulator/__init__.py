"""A GWS look-alike: REST login with CSRF, a Bayeux (CometD 3) server, Open Media lifecycles,
faults and a ground-truth log. See docs/simulator.md."""
