package loadgen

import "fmt"

func openSofa(clock *Clock, addrs []string, o TargetOptions) (Target, error) {
	return nil, fmt.Errorf("%w: sofa:// needs the wire package", ErrBadTarget)
}
