// parse-prometheus-text-format ships no types: the shape the tests read.
declare module 'parse-prometheus-text-format' {
  interface Metric {
    value?: string
    labels?: Record<string, string>
  }
  interface MetricFamily {
    name: string
    help: string
    type: string
    metrics: Metric[]
  }
  export default function parse(text: string): MetricFamily[]
}
