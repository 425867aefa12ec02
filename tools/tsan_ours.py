"""Exit 1 if ThreadSanitizer reports (its log_path files) hold a report with a frame of ours.

A report is the text from a "WARNING: ThreadSanitizer:" line to the next "=====" line; a frame
is ours if it names a source file under bnnslstm/, a Cython function of bnnslstm
(__pyx_...bnnslstm...) or one of our C helpers (bl_...). Reports in other libraries' frames
only (numpy's and scipy's OpenBLAS threads, which synchronize in code TSan does not see) are
counted, not failed on. No files: no reports. Prints the counts and every report of ours.
"""

import re
import sys

text = "".join(open(path).read() for path in sys.argv[1:])
reports = re.findall(r"WARNING: ThreadSanitizer:.*?(?=\n=+\n|\Z)", text, re.S)
ours = [r for r in reports if re.search(r"/bnnslstm/|__pyx_\w*bnnslstm|\bbl_\w+", r)]
print(f"ThreadSanitizer: {len(reports)} reports, {len(ours)} with a bnnslstm frame")
for r in ours:
    print(r)
sys.exit(1 if ours else 0)
