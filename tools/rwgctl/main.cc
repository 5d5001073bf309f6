// rwgctl: the command line over the rwg admin API (tools/kubectl-rwg runs it against a Helm
// release: `kubectl rwg ...`). Human tables by default, `-o json` for scripts; any failure prints
// one line on stderr and exits non-zero. The commands live in the rwgctl library, one file per
// noun (command_line.h).
#include <iostream>

#include "tools/rwgctl/command_line.h"

int main(int argc, char** argv) { return rwg::rwgctl::Run(argc, argv, std::cout, std::cerr); }
