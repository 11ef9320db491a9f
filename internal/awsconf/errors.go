package awsconf

import (
	"errors"
	"slices"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// throttlingCodes are the AWS error codes that ask a client to slow down.
var throttlingCodes = []string{
	"SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
	"RequestLimitExceeded", "ProvisionedThroughputExceededException", "LimitExceededException",
	"TooManyRequestsException", "RequestThrottledException",
}

// Failure reads what an AWS SDK error says: the HTTP status of the
// answer (0: none came), the service's error code ("": none), and
// "throttled" when the code asks to slow down ("" otherwise: the status
// tells the rest).
func Failure(err error) (status int, code, class string) {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	if IsThrottling(code) {
		class = "throttled"
	}
	return status, code, class
}

// IsThrottling reports whether an AWS error code asks to slow down.
func IsThrottling(code string) bool { return slices.Contains(throttlingCodes, code) }
