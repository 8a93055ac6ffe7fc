"""`traces verify`: a policy's criteria judged on a comparison's intervals, with a verdict a
CI job can gate on. `policy` reads policy files, `judge` decides, `model` is the result,
`render`, `junit` and `markdown` write it out."""
