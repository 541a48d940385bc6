package grpcx

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"google.golang.org/grpc/grpclog"
)

// grpcLog sends grpc-go's own log lines (and those of the generated gateway code) to the
// service's logger, so that they have its format (JSON in production) instead of
// grpclog's plain stderr lines. Its errors become warnings: they are about one
// connection or request (a stream body that does not decode), which the request's own
// status and audit event already report. Info and warning lines, which grpclog drops by
// default, are debug lines.
type grpcLog struct{ log atomic.Pointer[slog.Logger] }

var grpcLogger = &grpcLog{}

// RouteGRPCLog installs the adapter once, at process start (main), before any gRPC use:
// grpclog's logger must not change while gRPC runs.
func RouteGRPCLog() { grpclog.SetLoggerV2(grpcLogger) }

// SetGRPCLogger points the adapter at log (the service's logger, once it is built).
func SetGRPCLogger(log *slog.Logger) { grpcLogger.log.Store(log) }

func (g *grpcLog) logger() *slog.Logger {
	if l := g.log.Load(); l != nil {
		return l
	}
	return slog.Default()
}

func (g *grpcLog) debug(msg string) { g.logger().Debug("grpc: " + msg) }
func (g *grpcLog) warn(msg string)  { g.logger().Warn("grpc: " + msg) }

func (g *grpcLog) Info(args ...any)                 { g.debug(fmt.Sprint(args...)) }
func (g *grpcLog) Infoln(args ...any)               { g.debug(fmt.Sprint(args...)) }
func (g *grpcLog) Infof(format string, args ...any) { g.debug(fmt.Sprintf(format, args...)) }
func (g *grpcLog) Warning(args ...any)              { g.debug(fmt.Sprint(args...)) }
func (g *grpcLog) Warningln(args ...any)            { g.debug(fmt.Sprint(args...)) }
func (g *grpcLog) Warningf(format string, args ...any) {
	g.debug(fmt.Sprintf(format, args...))
}
func (g *grpcLog) Error(args ...any)                 { g.warn(fmt.Sprint(args...)) }
func (g *grpcLog) Errorln(args ...any)               { g.warn(fmt.Sprint(args...)) }
func (g *grpcLog) Errorf(format string, args ...any) { g.warn(fmt.Sprintf(format, args...)) }
func (g *grpcLog) Fatal(args ...any)                 { g.fatal(fmt.Sprint(args...)) }
func (g *grpcLog) Fatalln(args ...any)               { g.fatal(fmt.Sprint(args...)) }
func (g *grpcLog) Fatalf(format string, args ...any) { g.fatal(fmt.Sprintf(format, args...)) }
func (g *grpcLog) V(int) bool                        { return false }

func (g *grpcLog) fatal(msg string) {
	g.logger().Error("grpc: " + msg)
	os.Exit(1)
}
