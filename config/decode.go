package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decodeExpr evaluates expr with no variables or functions and stores it in
// the Go value val points to (a string, bool or integer here), with
// diagnostics worded as gohcl.DecodeExpression words them.
//
// Why not gohcl: it imports hclwrite, which links go-cmp, whose package
// init compiles regular expressions that stayed in usbctld's heap for good
// (~0.5 MB of a 1.7 MB live heap) for a feature the daemon never uses.
func decodeExpr(expr hcl.Expression, val any) hcl.Diagnostics {
	v, diags := expr.Value(nil)
	ty, err := gocty.ImpliedType(val)
	if err != nil {
		// A programming error: val is one of our own fields.
		panic(fmt.Sprintf("config: cannot decode into %T: %v", val, err))
	}
	unsuitable := func(err error) hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unsuitable value type",
			Detail:   "Unsuitable value: " + err.Error(),
			Subject:  expr.StartRange().Ptr(),
			Context:  expr.Range().Ptr(),
		})
	}
	if v, err = convert.Convert(v, ty); err != nil {
		return unsuitable(err)
	}
	if err := gocty.FromCtyValue(v, val); err != nil {
		return unsuitable(err)
	}
	return diags
}
