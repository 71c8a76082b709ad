#!/usr/bin/env python3
"""Prints a CloudFormation template (YAML with !Ref/!Sub tags) as JSON, in
the long form (`{"Fn::Sub": ...}`), using cfn-lint's own decoder: the tests
read the task definition from the template the way ECS would get it."""
import json, sys
from cfnlint.decode import decode

template, errors = decode(sys.argv[1])
if errors:
    sys.exit("\n".join(str(e) for e in errors))
json.dump(template, sys.stdout)
