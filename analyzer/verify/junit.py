"""A verification as JUnit XML: one test case per group and criterion, for CI test reports.

A failed criterion is a `<failure>`; an inconclusive or skipped one is `<skipped>` with the
reason (the test report shows it without failing the build; the exit code gates on it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from analyzer.verify.model import Verification
from analyzer.verify.render import shown_estimate


def junit_xml(verification: Verification) -> str:
    """The XML document (UTF-8 declaration included)."""
    counts = verification.counts()
    suites = ET.Element("testsuites", name="traces verify")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"verify {verification.policy}",
        tests=str(len(verification.judgements)),
        failures=str(counts["fail"]),
        errors="0",
        skipped=str(counts["inconclusive"] + counts["skipped"]),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("policy", verification.policy),
        ("policy_file", verification.policy_file),
        ("reference", verification.reference or ""),
        ("verdict", verification.status),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for judgement in verification.judgements:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{verification.policy}.{judgement.group}",
            name=f"{judgement.criterion} ({judgement.rule})",
        )
        detail = f"{judgement.metric}: {shown_estimate(judgement)}; {judgement.runs} runs"
        if judgement.status == "fail":
            failure = ET.SubElement(case, "failure", message=judgement.reason, type="fail")
            failure.text = detail
        elif judgement.status in ("inconclusive", "skipped"):
            ET.SubElement(
                case, "skipped", message=f"{judgement.status.upper()}: {judgement.reason}"
            )
        ET.SubElement(case, "system-out").text = detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
