// bucketscan's demo rule set: PHP webshells, which ClamAV's test database
// (and often its real one, for a one-liner) does not know. Each file of a
// set is its own namespace; see README "YARA rules beside ClamAV".

rule php_eval_of_request : webshell php {
    meta:
        description = "PHP that evaluates what the HTTP request sends"
        malware = true
        author = "bucketscan"
    strings:
        $eval = /(eval|assert|system|passthru|shell_exec)\s*\(\s*(base64_decode\s*\(\s*)?\$_(POST|GET|REQUEST|COOKIE)/
    condition:
        $eval
}

rule php_uploaded_as_image : php {
    meta:
        description = "a PHP opening tag in a file named as an image (a finding, not a verdict)"
        severity = "low"
    strings:
        $php = "<?php"
    condition:
        $php in (0..1024)
}
