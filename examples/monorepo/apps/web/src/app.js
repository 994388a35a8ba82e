export function render() { return "hello"; }
