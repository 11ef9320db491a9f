// Package awsconf loads the AWS configuration the AWS destinations share:
// the default credential chain or static keys, and a retry policy suited
// to a runtime that retries whole batches itself.
package awsconf

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Load returns the AWS configuration: region (or the environment's, else
// us-east-1), static keys when both are set (else the default credential
// chain), and an SDK that retries a failed request once more without its
// client-side retry quota: the runtime retries whole batches, and one
// client shared by many partitions must not run out of retry tokens.
func Load(ctx context.Context, region, accessKeyID, secretAccessKey string) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 2
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if accessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// A client of its own, so that CloseIdle can release its connections
	// when the destination closes.
	// The transport has the SDK's defaults; redirects are answered, not
	// followed, as the SDK's own client does.
	cfg.HTTPClient = &http.Client{
		Transport:     awshttp.NewBuildableClient().GetTransport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return cfg, nil
}

// CloseIdle closes the idle connections of an HTTP client Load made (a
// service client's Options().HTTPClient): a closed destination leaves no
// connection, nor its goroutines, behind.
func CloseIdle(hc aws.HTTPClient) {
	if c, ok := hc.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
