"""Exit 1 if a valgrind memcheck log has an error record with a frame in bnnslstm's code.

Records are the blocks between blank `==pid==` lines; a frame is ours if it names a bnnslstm
extension module (…/bnnslstm/….so), a Cython function of bnnslstm (__pyx_…bnnslstm…) or one of
our C helpers (bl_…). Prints the count of all records and of ours.
"""

import re
import sys

text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
errors = [r for r in records if re.search(r"==\d+== (Invalid|Conditional|Use of|Syscall param|"
                                          r"Mismatched|Source and destination|\d+ bytes in)", r)]
ours = [r for r in errors if re.search(r"/bnnslstm/[^ ]*\.so|__pyx_\w*bnnslstm|\bbl_\w+", r)]
print(f"valgrind memcheck: {len(errors)} error records, {len(ours)} with a bnnslstm frame")
for r in ours:
    print(r)
sys.exit(1 if ours else 0)
